import WebSocket from 'ws';

/** A message as the test client received it. @publicApi */
export interface ReceivedMessage {
  data: Buffer;
  isBinary: boolean;
  /** The payload decoded as UTF-8. */
  text: string;
}

/** How the connection ended. @publicApi */
export interface CloseEvent {
  code: number;
  reason: string;
}

interface Waiter {
  resolve(message: ReceivedMessage): void;
  reject(error: Error): void;
}

/**
 * A `ws` client for e2e tests (jest or vitest): it queues what the server sends, so a test
 * awaits `next()` instead of wiring listeners, and a missing message fails with a clear message.
 *
 * @example
 * await using client = await connectWs(app, '/socket/handle');
 * client.send('hi');
 * expect((await client.next()).text).toMatch(/^Your message: hi/);
 * @publicApi
 */
export class WsTestClient {
  /** Resolves with the close code and reason once the connection is closed. */
  readonly closed: Promise<CloseEvent>;
  private readonly queue: ReceivedMessage[] = [];
  private readonly waiters: Waiter[] = [];
  private closeEvent?: CloseEvent;

  constructor(
    /** The underlying `ws` client. */
    readonly ws: WebSocket,
    private readonly timeout: number,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const message = { data, isBinary, text: data.toString('utf8') };
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(message);
      else this.queue.push(message);
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.once('close', (code: number, reason: Buffer) => {
        this.closeEvent = { code, reason: reason.toString() };
        for (const waiter of this.waiters.splice(0))
          waiter.reject(this.closedError());
        resolve(this.closeEvent);
      }),
    );
  }

  /** Sends text, binary (Buffer), or anything else as JSON. */
  send(data: unknown): void {
    const payload =
      typeof data === 'string' ||
      Buffer.isBuffer(data) ||
      ArrayBuffer.isView(data)
        ? data
        : JSON.stringify(data);
    this.ws.send(payload as string | Buffer);
  }

  /**
   * The next message from the server.
   * @param timeout ms to wait before failing
   * @throws Error when none arrives in time or the connection closes first
   */
  next(timeout = this.timeout): Promise<ReceivedMessage> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closeEvent) return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(
          new Error(`No message from ${this.ws.url} within ${timeout} ms.`),
        );
      }, timeout);
      const waiter: Waiter = {
        resolve: (message) => (clearTimeout(timer), resolve(message)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      };
      this.waiters.push(waiter);
    });
  }

  /** The next message, parsed as JSON. */
  async nextJson<T = any>(timeout?: number): Promise<T> {
    const message = await this.next(timeout);
    try {
      return JSON.parse(message.text) as T;
    } catch {
      throw new Error(
        `Expected JSON from ${this.ws.url}, got: ${message.text.slice(0, 200)}`,
      );
    }
  }

  /**
   * Closes the connection and resolves with the server's answer once it is closed.
   * @param code the close code to send @default 1000
   * @param reason the close reason to send @default ''
   * @example expect(await client.close()).toEqual({ code: 1000, reason: '' });
   */
  close(code = 1000, reason = ''): Promise<CloseEvent> {
    // `ws` sends a close frame without a code when none is given, and a server answers that with 1005
    if (
      this.ws.readyState === WebSocket.CONNECTING ||
      this.ws.readyState === WebSocket.OPEN
    )
      this.ws.close(code, reason);
    return this.closed;
  }

  /**
   * Closes with 1000 when the client leaves an `await using` block.
   * @example await using client = await connectWs(app, '/socket/handle');
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private closedError(): Error {
    const { code, reason } = this.closeEvent!;
    return new Error(
      `The connection to ${this.ws.url} closed (${code}${reason ? ` ${reason}` : ''}) before a message arrived.`,
    );
  }
}
