import { AckSchedule } from '../protocol/ack-schedule';
import {
  ACK_BYTES,
  ACK_PARAM,
  Frame,
  type GroupPosition,
  header,
  parseHeader,
  RESUME_PARAM,
  SINCE_PARAM,
  sinceValue,
  type Welcome,
} from '../protocol/envelope';
import { backoffDelay } from './backoff';
import { ClientMessage, RequestError } from './client-message';
import type {
  ClientEvents,
  ClientState,
  CloseCodes,
  ConnectOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './client-options';
import { Emitter } from './emitter';
import { byteLength, encode, frameOf, parseJson, split } from './frames';
import { Liveness } from './liveness';
import { Outbox, type Outgoing } from './outbox';
import { PendingRequests, requestId } from './pending-requests';

const OPEN = 1;
/** The most groups a connection names positions of. */
const MAX_SINCE = 32;
/** The most bytes of the URL their positions take (Node refuses requests past 16 KiB of headers). */
const SINCE_BYTES = 4096;
const STOP_ON: CloseCodes = [1008, 1003, [4400, 4499]];
const RETRY_ON: CloseCodes = [1001, 1006, [1011, 1014]];

const matches = (code: number, codes: CloseCodes) =>
  codes.some((c) =>
    typeof c === 'number' ? c === code : code >= c[0] && code <= c[1],
  );

/**
 * A WebSocket client for endpoints with `reliable` or `requests`: it reconnects with backoff,
 * keeps what is sent while offline, resumes reliable sessions (nothing lost, nothing twice),
 * and matches requests to replies. No dependency; browsers and Node.
 * @example
 * const client = connect('wss://example.com/orders');
 * client.on('state', (state) => console.log(state));
 * const reply = await client.request({ item: 'book' }, { timeout: 5000 });
 * @publicApi
 */
export class WsClient
  extends Emitter<ClientEvents>
  implements AsyncIterable<ClientMessage>
{
  private phase: ClientState = 'connecting';
  private ws?: WebSocketLike;
  private welcome?: Welcome;
  private readonly outbox: Outbox;
  private readonly requests = new PendingRequests();
  private readonly liveness?: Liveness;
  /** Server messages no iterator has taken yet, and iterators waiting for one. */
  private readonly inbox: ClientMessage[] = [];
  private readonly readers: Array<
    (result: IteratorResult<ClientMessage>) => void
  > = [];
  /** Whether an iterator reads the messages: only then are they kept for it. */
  private iterating = false;
  private sent = 0;
  private received = 0;
  /**
   * Where each group stood at its last message, the most recently heard last: named on every
   * connection, to recover from.
   */
  private readonly positions = new Map<string, GroupPosition>();
  private readonly acks = new AckSchedule(() => {
    if (this.ws?.readyState === OPEN) {
      this.ws.send(header(Frame.Ack, this.received));
    }
  });
  private attempt = 0;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private connectTimer?: ReturnType<typeof setTimeout>;
  private readonly Ctor: WebSocketConstructor;
  /** Whether the current connection has said welcome: its first frame must. */
  private greeted = false;
  /** The browser is back online: a waiting reconnection goes now. */
  private readonly online = () => {
    if (this.retryTimer !== undefined) void this.open();
  };
  /** The browser went offline: an open socket may be dead, so it is asked now. */
  private readonly offline = () => this.liveness?.check();

  constructor(
    private readonly url: string,
    private readonly options: ConnectOptions = {},
  ) {
    super();
    const { messages = 1000, bytes = 1 << 20 } = options.queue ?? {};
    this.outbox = new Outbox(messages, bytes);
    this.Ctor =
      options.WebSocket ??
      (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket!;
    if (!this.Ctor) {
      throw new TypeError(
        "No WebSocket class: pass options.WebSocket (ws's class in Node < 22).",
      );
    }
    const { ping = { interval: 15_000, timeout: 5_000 } } = options;
    if (ping) {
      this.liveness = new Liveness(
        ping.interval,
        ping.timeout,
        () => this.ws?.readyState === OPEN && this.ws.send(header(Frame.Ping)),
        () => this.ws && this.drop(this.ws),
      );
    }
    const global = globalThis as { addEventListener?: Function };
    global.addEventListener?.('online', this.online);
    global.addEventListener?.('offline', this.offline);
    // after the constructor: every event, even one of a token callback that throws at once,
    // comes once the caller could listen
    queueMicrotask(() => void this.open());
  }

  get state(): ClientState {
    return this.phase;
  }

  /** The current session's id (the server's `socket.id`), once the server said welcome. */
  get session(): string | undefined {
    return this.welcome?.session;
  }

  /** Messages waiting to be delivered: sent offline, or not acked yet. */
  get queued(): number {
    return this.outbox.length;
  }

  /**
   * Sends a message: a string as text, bytes as binary, anything else as JSON. Delivered once
   * the connection is up (reliable mode: exactly once, in order, across drops).
   * @throws RangeError when the queue is full; Error once the client is closed
   */
  send(data: unknown): void {
    this.enqueue(Frame.Message, data);
  }

  /**
   * Sends a request and resolves with the server's `socket.reply()`. A retry after a drop carries
   * the same id, so the server processes it once.
   * Rejects with a RequestError: the server's status for `socket.replyError()`, 408 after
   * `timeout`, 503 when the client closes; with a RangeError when the queue is full.
   */
  request(
    data: unknown,
    { timeout = 30_000 }: { timeout?: number } = {},
  ): Promise<ClientMessage> {
    try {
      const item = this.enqueue(Frame.Request, data, requestId());
      // a request given up is not sent again
      return this.requests.add(item, timeout, () => this.outbox.remove(item));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Closes the connection with `code` and stops; pending requests fail. */
  close(code = 1000, reason = ''): void {
    if (this.phase === 'closed') return;
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      detach(ws);
      ws.close(code, reason);
    }
    this.stop(code, reason);
  }

  [Symbol.asyncIterator](): AsyncIterator<ClientMessage> {
    this.iterating = true;
    return {
      next: () => {
        const message = this.inbox.shift();
        if (message) return Promise.resolve({ value: message, done: false });
        if (this.phase === 'closed')
          return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.readers.push(resolve));
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }

  private enqueue(
    kind: Outgoing['kind'],
    data: unknown,
    id?: string,
  ): Outgoing {
    if (this.phase === 'closed') throw new Error('The client is closed.');
    const payload = encode(data);
    const bytes = byteLength(payload);
    if (!this.outbox.fits(bytes)) {
      throw new RangeError(
        'The client queue is full: wait until the connection is back.',
      );
    }
    const item: Outgoing = { kind, payload, id, seq: 0, bytes };
    // kept until acked (reliable), or until sent; a request stays known until its reply
    this.outbox.push(item);
    if (this.welcome && this.ws?.readyState === OPEN) this.transmit(item);
    return item;
  }

  private transmit(item: Outgoing): void {
    const reliable = this.welcome!.reliable;
    if (reliable && item.seq === 0) item.seq = ++this.sent;
    this.ws!.send(
      frameOf(item.kind, reliable ? item.seq : 0, item.payload, item.id),
    );
    if (!reliable) this.outbox.remove(item);
  }

  private async open(): Promise<void> {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.setState(this.welcome ? 'reconnecting' : 'connecting');
    let url = this.url;
    try {
      const token = await this.options.token?.();
      if (token !== undefined)
        url = withParam(url, this.options.tokenParam ?? 'token', token);
    } catch {
      return this.retry();
    }
    if (this.phase === 'closed') return;
    if (this.welcome?.reliable && this.welcome.token) {
      url = withParam(
        withParam(url, RESUME_PARAM, this.welcome.token),
        ACK_PARAM,
        String(this.received),
      );
    }
    // the most recently heard groups first, within SINCE_BYTES: a server refuses a long URL
    let room = SINCE_BYTES;
    for (const [group, position] of Array.from(this.positions).reverse()) {
      const value = sinceValue(group, position);
      room -= SINCE_PARAM.length + 2 + encodeURIComponent(value).length;
      if (room < 0) break;
      url = withParam(url, SINCE_PARAM, value);
    }
    let ws: WebSocketLike;
    try {
      ws = new this.Ctor(url, this.options.protocols);
    } catch (error) {
      // an invalid URL or subprotocol: trying again would not help
      return this.stop(1006, String((error as Error)?.message ?? error));
    }
    this.ws = ws;
    this.greeted = false;
    ws.binaryType = 'arraybuffer';
    this.connectTimer = setTimeout(
      () => this.drop(ws),
      this.options.connectTimeout ?? 10_000,
    );
    ws.onmessage = (event) => this.frame(ws, event.data);
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
    ws.onerror = () => undefined; // a close follows
  }

  /** One frame from the server. */
  private frame(ws: WebSocketLike, data: unknown): void {
    if (ws !== this.ws) return;
    this.liveness?.heard();
    const { line, payload } = split(data);
    const parsed = line === undefined ? undefined : parseHeader(line);
    // welcome comes first, and once
    if (!parsed || this.greeted !== (parsed.kind !== Frame.Welcome)) {
      return this.drop(ws, 1002);
    }
    switch (parsed.kind) {
      case Frame.Welcome: {
        const welcome = parseJson<Welcome>(payload);
        return welcome ? this.welcomed(ws, welcome) : this.drop(ws, 1002);
      }
      case Frame.Ack:
        return this.outbox.acked(parsed.seq);
      case Frame.Pong:
        return;
      case Frame.Group:
      case Frame.GroupPosition:
      case Frame.GroupLost: {
        if (!this.inOrder(ws, parsed.seq, payload)) return;
        const { group, position } = parsed as Required<typeof parsed>;
        const known = this.positions.get(group);
        if (position.epoch === '-') {
          // no place in the group's history (sent while the server's broker was away)
          if (parsed.kind === Frame.GroupLost) this.positions.delete(group);
        } else if (
          // a position said on joining is older than a message that overtook it
          parsed.kind !== Frame.GroupPosition ||
          known?.epoch !== position.epoch ||
          known.offset < position.offset
        ) {
          this.positions.delete(group);
          this.positions.set(group, position);
          // only the most recent are named on reconnecting
          if (this.positions.size > MAX_SINCE) {
            this.positions.delete(this.positions.keys().next().value!);
          }
        }
        if (parsed.kind === Frame.GroupLost)
          return this.emit('lost', { group });
        if (parsed.kind === Frame.Group) {
          this.deliver(new ClientMessage(payload, group));
        }
        return;
      }
      case Frame.Message:
      case Frame.Reply:
      case Frame.Failure:
        if (this.welcome?.reliable && !this.inOrder(ws, parsed.seq, payload)) {
          return;
        }
        if (parsed.kind === Frame.Message) {
          return this.deliver(new ClientMessage(payload));
        }
        // a request answered leaves the outbox, acked or not: it will not be sent again
        this.settled(parsed.id!, parsed.kind, payload);
        return;
    }
    this.drop(ws, 1002);
  }

  private settled(
    id: string,
    kind: string,
    payload: string | Uint8Array,
  ): void {
    const request = this.requests.settle(id, kind, payload);
    if (request) this.outbox.remove(request);
  }

  /**
   * Whether message `seq` is the next one: one we have is dropped (sent again after a drop), one
   * beyond the next breaks the envelope.
   */
  private inOrder(
    ws: WebSocketLike,
    seq: number,
    payload: string | Uint8Array,
  ): boolean {
    if (seq === this.received + 1) {
      this.received = seq;
      this.acks.received(payload.length);
      return true;
    }
    if (seq <= this.received) this.acks.received(0);
    else this.drop(ws, 1002);
    return false;
  }

  private welcomed(ws: WebSocketLike, welcome: Welcome): void {
    clearTimeout(this.connectTimer);
    this.greeted = true;
    this.welcome = welcome;
    if (welcome.replayBuffer) {
      this.acks.bytesBound = Math.min(ACK_BYTES, welcome.replayBuffer / 2);
    }
    this.attempt = 0;
    if (!welcome.resumed) {
      // a new session: what the last one had not acked is sent again, renumbered; so are
      // requests still waiting for their reply, which the server recognizes by id
      this.sent = this.received = 0;
      const queued = this.outbox.pending();
      for (const item of this.requests.items()) {
        if (!queued.includes(item)) this.outbox.push(item);
      }
      for (const item of this.outbox.pending()) item.seq = 0;
    } else {
      this.outbox.acked(welcome.ack);
    }
    this.setState('open');
    this.emit('session', welcome);
    // a copy: without acks, what is sent leaves the outbox
    for (const item of Array.from(this.outbox.pending())) {
      if (ws !== this.ws) return;
      this.transmit(item);
    }
    this.liveness?.start();
  }

  private deliver(message: ClientMessage): void {
    this.emit('message', message);
    if (!this.iterating) return;
    const reader = this.readers.shift();
    if (reader) reader({ value: message, done: false });
    else this.inbox.push(message);
  }

  /** Gives a connection up (dead, or saying what we cannot read) and tries again, or stops. */
  private drop(ws: WebSocketLike, code = 1006): void {
    if (ws !== this.ws) return;
    detach(ws);
    try {
      ws.close(code === 1002 ? 1002 : 1000);
    } catch {
      // closing a socket that never opened
    }
    this.closed(ws, code, '');
  }

  private closed(ws: WebSocketLike, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = undefined;
    clearTimeout(this.connectTimer);
    this.acks.cancel();
    this.liveness?.stop();
    const { stopOn = STOP_ON, retryOn = RETRY_ON, reconnect } = this.options;
    if (
      matches(code, stopOn) ||
      !matches(code, retryOn) ||
      reconnect === false
    ) {
      return this.stop(code, reason);
    }
    this.retry();
  }

  private retry(): void {
    if (this.phase === 'closed') return;
    const { reconnect } = this.options;
    const backoff = reconnect || {};
    if (reconnect === false || this.attempt >= (backoff.retries ?? Infinity)) {
      return this.stop(1006, 'Gave up reconnecting');
    }
    this.setState(this.welcome ? 'reconnecting' : 'connecting');
    this.retryTimer = setTimeout(
      () => void this.open(),
      backoffDelay(this.attempt++, backoff),
    );
  }

  private stop(code: number, reason: string): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    this.acks.cancel();
    this.liveness?.stop();
    const global = globalThis as { removeEventListener?: Function };
    global.removeEventListener?.('online', this.online);
    global.removeEventListener?.('offline', this.offline);
    this.setState('closed');
    this.requests.failAll(
      new RequestError(503, `The client is closed (${code}).`),
    );
    for (const reader of this.readers.splice(0)) {
      reader({ value: undefined, done: true });
    }
    this.emit('close', { code, reason });
  }

  private setState(state: ClientState): void {
    if (this.phase === state || this.phase === 'closed') return;
    this.phase = state;
    this.emit('state', state);
  }
}

/**
 * Connects to an endpoint with `reliable` or `requests`.
 * @example const client = connect('ws://localhost:3000/orders', { WebSocket }); // ws's class in Node < 22
 * @publicApi
 */
export function connect(url: string, options?: ConnectOptions): WsClient {
  return new WsClient(url, options);
}

function withParam(url: string, name: string, value: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}${name}=${encodeURIComponent(value)}`;
}

/** Stops listening to a socket we let go; its late error is swallowed (ws throws one with no listener). */
function detach(ws: WebSocketLike): void {
  ws.onclose = ws.onmessage = ws.onopen = null;
  ws.onerror = () => undefined;
}
