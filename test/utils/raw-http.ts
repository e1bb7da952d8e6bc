import { connect, Socket } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import { decodeFrame } from './frames';
import { within } from './within';

/** A raw HTTP answer: status code, lower-cased headers and body. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends `request` (a raw HTTP request head, for handshakes a real client would not send) and
 * resolves with the answer once the server closes the connection, or, with `closeAfterHead`,
 * once the response head has arrived (for a 101, after which the socket stays open).
 */
export function rawRequest(
  app: INestApplication,
  request: string,
  { closeAfterHead = false } = {},
): Promise<RawResponse> {
  const { port } = app.getHttpServer().address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      if (closeAfterHead && Buffer.concat(chunks).includes('\r\n\r\n'))
        socket.destroy();
    });
    socket.on('error', reject);
    socket.on('close', () =>
      resolve(parse(Buffer.concat(chunks).toString('utf8'))),
    );
  });
}

/** An upgrade request head for `path`, with `headers` replacing or (when null) removing the defaults. */
export function upgradeRequest(
  path: string,
  headers: Record<string, string | null> = {},
): string {
  const all: Record<string, string | null> = {
    Host: 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  const lines = Object.entries(all)
    .filter(([, value]) => value !== null)
    .map(([name, value]) => `${name}: ${value}`);
  return `GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

function parse(text: string): RawResponse {
  const [head, ...rest] = text.split('\r\n\r\n');
  const [statusLine, ...headerLines] = head.split('\r\n');
  const headers = Object.fromEntries(
    headerLines.map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
    }),
  );
  return {
    status: Number(statusLine.split(' ')[1]),
    headers,
    body: rest.join('\r\n\r\n'),
  };
}

/** A plain (no upgrade) request head for `path`, kept alive unless `headers` say otherwise. */
export function plainRequest(
  path: string,
  headers: Record<string, string> = {},
): string {
  const lines = Object.entries({
    Host: 'localhost',
    Connection: 'keep-alive',
    ...headers,
  }).map(([name, value]) => `${name}: ${value}`);
  return `GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

/** A response read off a connection that may carry more after it. */
export interface SequencedResponse extends RawResponse {
  /** `HTTP/1.1 101 Switching Protocols`, as sent. */
  statusLine: string;
}

/**
 * A raw TCP connection to an app, for peers a real client is not: pipelining, trailing bytes,
 * never ending its side. What the server sends is read in order: HTTP responses, then frames.
 * Every wait fails loudly after `timeout` ms (2 s unless `open` is told otherwise).
 */
export class RawConnection {
  /** Resolves when the server has ended its side (FIN). */
  readonly ended: Promise<void>;
  /** Resolves when the socket is closed. */
  readonly closed: Promise<void>;
  private bytes = Buffer.alloc(0);
  private isEnded = false;
  private readonly wakers = new Set<() => void>();

  private constructor(
    readonly socket: Socket,
    private readonly timeout: number,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.bytes = Buffer.concat([this.bytes, chunk]);
      this.wake();
    });
    // a reset after the server closed is one more way of seeing it close
    socket.on('error', () => undefined);
    this.ended = new Promise((resolve) =>
      socket.once('end', () => {
        this.isEnded = true;
        this.wake();
        resolve();
      }),
    );
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isEnded = true;
        this.wake();
        resolve();
      }),
    );
  }

  /**
   * Connects to `app`. With `allowHalfOpen`, the socket does not end its side when the server
   * ends its own: a peer that never lets go.
   */
  static open(
    app: INestApplication,
    { allowHalfOpen = false, timeout = 2000 } = {},
  ): Promise<RawConnection> {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen });
    const connection = new RawConnection(socket, timeout);
    return within(
      new Promise((resolve, reject) => {
        socket.once('connect', () => resolve(connection));
        socket.once('error', reject);
      }),
      timeout,
      `connecting to port ${port}`,
    );
  }

  /** The client's port: the server's `remotePort` of this connection. */
  get localPort(): number {
    return this.socket.localPort!;
  }

  /** What the server sent that no `next…()` has taken yet. */
  get unread(): Buffer {
    return this.bytes;
  }

  /** Writes `data` in one write; resolves once it is handed to the kernel. */
  write(data: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(data, (error) => (error ? reject(error) : resolve())),
    );
  }

  /** The next complete HTTP response. */
  nextResponse(timeout = this.timeout): Promise<SequencedResponse> {
    return this.take('an HTTP response', timeout, takeResponse);
  }

  /** The next WebSocket frame the server sent. */
  nextFrame(
    timeout = this.timeout,
  ): Promise<{ opcode: number; payload: Buffer }> {
    return this.take('a WebSocket frame', timeout, (bytes) => {
      const frame = decodeFrame(bytes);
      if (!frame) return undefined;
      const length = bytes[1] & 0x7f;
      const head =
        2 +
        (length === 126 ? 2 : length === 127 ? 8 : 0) +
        (bytes[1] & 0x80 ? 4 : 0);
      return {
        value: { opcode: frame.opcode, payload: frame.payload },
        used: head + frame.payload.length,
      };
    });
  }

  /** Resolves when the server has ended its side, or fails after `timeout`. */
  whenEnded(timeout = this.timeout): Promise<void> {
    return within(
      this.ended,
      timeout,
      () => `the server never ended connection :${this.localPort}`,
    );
  }

  destroy(): void {
    this.socket.destroy();
  }

  private take<T>(
    what: string,
    timeout: number,
    parse: (
      bytes: Buffer,
      ended: boolean,
    ) => { value: T; used: number } | undefined,
  ): Promise<T> {
    let waker: () => void = () => undefined;
    const found = new Promise<T>((resolve, reject) => {
      waker = () => {
        const taken = parse(this.bytes, this.isEnded);
        if (taken) {
          this.bytes = this.bytes.subarray(taken.used);
          resolve(taken.value);
        } else if (this.isEnded) {
          reject(
            new Error(
              `The connection ended before ${what} arrived; received: ${JSON.stringify(this.bytes.toString('latin1'))}`,
            ),
          );
        } else return;
        this.wakers.delete(waker);
      };
      this.wakers.add(waker);
      waker();
    });
    return within(
      found,
      timeout,
      () =>
        `waiting for ${what} on :${this.localPort}; received: ${JSON.stringify(this.bytes.toString('latin1').slice(0, 300))}`,
    ).finally(() => this.wakers.delete(waker));
  }

  private wake(): void {
    for (const waker of this.wakers) waker();
  }
}

/** One response from the front of `bytes`, or undefined while it is incomplete. */
function takeResponse(
  bytes: Buffer,
  ended: boolean,
): { value: SequencedResponse; used: number } | undefined {
  const headEnd = bytes.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const [statusLine, ...headerLines] = bytes
    .subarray(0, headEnd)
    .toString('latin1')
    .split('\r\n');
  const status = Number(statusLine.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const start = headEnd + 4;
  const respond = (body: Buffer, used: number) => ({
    value: { statusLine, status, headers, body: body.toString('utf8') },
    used,
  });
  if (status < 200 || status === 204 || status === 304)
    return respond(Buffer.alloc(0), start);
  if (headers['content-length'] !== undefined) {
    const end = start + Number(headers['content-length']);
    return bytes.length < end
      ? undefined
      : respond(bytes.subarray(start, end), end);
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const chunks: Buffer[] = [];
    let at = start;
    for (;;) {
      const lineEnd = bytes.indexOf('\r\n', at);
      if (lineEnd < 0) return undefined;
      const size = parseInt(bytes.subarray(at, lineEnd).toString(), 16);
      if (size === 0) {
        const trailerEnd = bytes.indexOf('\r\n', lineEnd + 2);
        return trailerEnd < 0
          ? undefined
          : respond(Buffer.concat(chunks), trailerEnd + 2);
      }
      if (bytes.length < lineEnd + 2 + size + 2) return undefined;
      chunks.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  // no length: the body runs to the end of the connection
  return ended ? respond(bytes.subarray(start), bytes.length) : undefined;
}
