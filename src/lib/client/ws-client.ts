import {
  ACK_PARAM,
  Frame,
  header,
  MAX_HEADER,
  parseHeader,
  RESUME_PARAM,
  type RequestFailure,
  type Welcome,
} from '../protocol/envelope';
import { backoffDelay, type BackoffOptions } from './backoff';
import { ClientMessage, RequestError } from './client-message';
import { frameOf, Outbox, type Outgoing } from './outbox';

/** What a `WebSocket` constructor must offer: the browser's, Node's global one, or `ws`'s. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
) => WebSocketLike;

/** Close codes, one by one or as `[first, last]` ranges. @publicApi */
export type CloseCodes = Array<number | [number, number]>;

/** Options of `connect()`. @publicApi */
export interface ConnectOptions {
  /** The `WebSocket` class; by default the global one (browsers, Node ≥ 22). */
  WebSocket?: WebSocketConstructor;
  /** Subprotocols to offer. */
  protocols?: string | string[];
  /**
   * Called before every (re)connect; its result goes in the URL's `tokenParam` query parameter,
   * so an expired token is replaced rather than sent again.
   */
  token?: () => string | undefined | Promise<string | undefined>;
  /** @default 'token' */
  tokenParam?: string;
  /** Reconnection with exponential backoff and full jitter, or `false` for none. */
  reconnect?: BackoffOptions | false;
  /** ms a connection has to open and say welcome before it is dropped and tried again. @default 10000 */
  connectTimeout?: number;
  /**
   * What waits to be delivered (sent while offline, or not acked yet in reliable mode) is
   * bounded: past either bound `send()` and `request()` throw a `RangeError`, and nothing queued
   * is dropped. @default { messages: 1000, bytes: 1048576 }
   */
  queue?: { messages?: number; bytes?: number };
  /**
   * Liveness: a ping every `interval` ms; no frame from the server within `timeout` ms after it
   * means the connection is dead (a half-open one a browser cannot see), and it is replaced.
   * @default { interval: 15000, timeout: 5000 }
   */
  ping?: { interval: number; timeout: number } | false;
  /** Close codes after which the client does not reconnect. @default [1008, 1003, [4400, 4499]] */
  stopOn?: CloseCodes;
  /** Close codes after which it reconnects; any other ends it. @default [1001, 1006, [1011, 1014]] */
  retryOn?: CloseCodes;
}

/** The client's states. @publicApi */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

interface ClientEvents {
  message: ClientMessage;
  state: ClientState;
  /** Said by the server on each connection: whether the session was resumed, its id. */
  session: Welcome;
  /** The client stopped: its close code and reason. */
  close: { code: number; reason: string };
}

type Listener<T> = (value: T) => void;

interface PendingRequest {
  item: Outgoing;
  resolve(message: ClientMessage): void;
  reject(error: Error): void;
  timer?: ReturnType<typeof setTimeout>;
}

const ACK_EVERY = 32;
const ACK_DELAY = 100;
const OPEN = 1;

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
export class WsClient implements AsyncIterable<ClientMessage> {
  private phase: ClientState = 'connecting';
  private ws?: WebSocketLike;
  private welcome?: Welcome;
  private readonly outbox: Outbox;
  private readonly requests = new Map<string, PendingRequest>();
  private readonly listeners = new Map<
    keyof ClientEvents,
    Set<Listener<never>>
  >();
  /** Server messages no iterator has taken yet, and iterators waiting for one. */
  private readonly inbox: ClientMessage[] = [];
  private readonly readers: Array<
    (result: IteratorResult<ClientMessage>) => void
  > = [];
  private sent = 0;
  private received = 0;
  private unacked = 0;
  private attempt = 0;
  private timer?: ReturnType<typeof setTimeout>;
  private ackTimer?: ReturnType<typeof setTimeout>;
  private pingTimer?: ReturnType<typeof setTimeout>;
  private lastHeard = 0;
  private pinged = false;
  /** Whether an iterator reads the messages: only then are they kept for it. */
  private iterating = false;
  private deadline?: ReturnType<typeof setTimeout>;
  private readonly Ctor: WebSocketConstructor;
  private readonly online = () => {
    if (this.phase === 'reconnecting' && !this.ws) void this.open();
  };
  /** The browser says it lost the network: an open socket may be dead, so ask it now. */
  private readonly offline = () => {
    if (this.ws && this.welcome && !this.pinged) this.ping(this.ws);
  };

  constructor(
    private readonly url: string,
    private readonly options: ConnectOptions = {},
  ) {
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
    (globalThis as { addEventListener?: Function }).addEventListener?.(
      'online',
      this.online,
    );
    void this.open();
  }

  get state(): ClientState {
    return this.phase;
  }

  /** The current session's id, once the server said welcome. */
  get session(): string | undefined {
    return this.welcome?.session;
  }

  /** Messages waiting to be delivered: sent offline, or not acked yet. */
  get queued(): number {
    return this.outbox.length;
  }

  /** Listens to an event; returns what stops listening. */
  on<K extends keyof ClientEvents>(
    event: K,
    listener: Listener<ClientEvents[K]>,
  ): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => void set.delete(listener);
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
    return new Promise((resolve, reject) => {
      const id = requestId();
      const item = this.enqueue(Frame.Request, data, id);
      const pending: PendingRequest = { item, resolve, reject };
      pending.timer = setTimeout(() => {
        this.requests.delete(id);
        reject(new RequestError(408, 'Request timed out'));
      }, timeout);
      this.requests.set(id, pending);
    });
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
    const bytes = typeof payload === 'string' ? payload.length : payload.length;
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
    clearTimeout(this.timer);
    this.setState(this.welcome || this.attempt ? 'reconnecting' : 'connecting');
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
    let ws: WebSocketLike;
    try {
      ws = new this.Ctor(url, this.options.protocols);
    } catch {
      return this.retry();
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    this.deadline = setTimeout(
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
    this.alive();
    const { line, payload } = split(data);
    const parsed = line === undefined ? undefined : parseHeader(line);
    if (!parsed) return this.drop(ws, 1002);
    const reliable = this.welcome?.reliable;
    switch (parsed.kind) {
      case Frame.Welcome: {
        const welcome = parseJson<Welcome>(payload);
        return welcome ? this.welcomed(ws, welcome) : this.drop(ws, 1002);
      }
      case Frame.Ack:
        return this.outbox.acked(parsed.seq);
      case Frame.Pong:
        return;
      case Frame.Message:
      case Frame.Reply:
      case Frame.Failure:
        if (reliable) {
          if (parsed.seq <= this.received) return this.scheduleAck();
          if (parsed.seq !== this.received + 1) return this.drop(ws, 1002);
          this.received = parsed.seq;
          this.scheduleAck();
        }
        if (parsed.kind === Frame.Message)
          return this.deliver(new ClientMessage(payload));
        return this.answered(parsed.id!, parsed.kind, payload);
    }
    this.drop(ws, 1002);
  }

  private welcomed(ws: WebSocketLike, welcome: Welcome): void {
    clearTimeout(this.deadline);
    const fresh = !welcome.resumed;
    this.welcome = welcome;
    this.attempt = 0;
    if (fresh) {
      // a new session: what the last one had not acked is sent again, renumbered; so are
      // requests still waiting for their reply, which the server recognizes by id
      this.sent = this.received = 0;
      for (const request of this.requests.values()) {
        if (!this.outbox.pending().includes(request.item))
          this.outbox.push(request.item);
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
    const ping = this.options.ping ?? { interval: 15_000 };
    if (ping) this.watch(ws, ping.interval);
  }

  private answered(
    id: string,
    kind: string,
    payload: string | Uint8Array,
  ): void {
    const pending = this.requests.get(id);
    if (!pending) return;
    this.requests.delete(id);
    clearTimeout(pending.timer);
    this.outbox.remove(pending.item);
    if (kind === Frame.Reply)
      return pending.resolve(new ClientMessage(payload));
    const failure = parseJson<RequestFailure>(payload);
    pending.reject(
      new RequestError(
        failure?.status ?? 500,
        failure?.message ?? 'Request failed',
      ),
    );
  }

  private deliver(message: ClientMessage): void {
    this.emit('message', message);
    if (!this.iterating) return;
    const reader = this.readers.shift();
    if (reader) reader({ value: message, done: false });
    else this.inbox.push(message);
  }

  private scheduleAck(): void {
    if (++this.unacked >= ACK_EVERY) return this.sendAck();
    this.ackTimer ??= setTimeout(() => this.sendAck(), ACK_DELAY);
  }

  private sendAck(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.unacked = 0;
    if (this.ws?.readyState === OPEN)
      this.ws.send(header(Frame.Ack, this.received));
  }

  /** Heard from the server: no ping is due until `interval` from now. */
  private alive(): void {
    this.lastHeard = Date.now();
    this.pinged = false;
  }

  /**
   * Liveness: after `interval` without a frame from the server, a ping; `timeout` more without
   * one, and the connection is dropped and replaced. A dead one is noticed within their sum.
   */
  private watch(ws: WebSocketLike, delay: number): void {
    const ping = this.options.ping ?? { interval: 15_000, timeout: 5_000 };
    if (!ping) return;
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(() => {
      if (ws !== this.ws) return;
      if (this.pinged) return this.drop(ws);
      const idle = Date.now() - this.lastHeard;
      if (idle < ping.interval) return this.watch(ws, ping.interval - idle);
      this.ping(ws);
    }, delay);
  }

  /** Pings now; without a frame from the server within `timeout`, the connection is replaced. */
  private ping(ws: WebSocketLike): void {
    const ping = this.options.ping ?? { interval: 15_000, timeout: 5_000 };
    if (!ping || ws.readyState !== OPEN) return;
    this.pinged = true;
    ws.send(header(Frame.Ping));
    this.watch(ws, ping.timeout);
  }

  /** Gives a connection up (dead, or saying what we cannot read) and tries again. */
  private drop(ws: WebSocketLike, code = 4000): void {
    if (ws !== this.ws) return;
    detach(ws);
    try {
      ws.close(code === 1002 ? 1002 : 1000);
    } catch {
      // closing a socket that never opened
    }
    this.closed(ws, code === 1002 ? 1002 : 1006, '');
  }

  private closed(ws: WebSocketLike, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = undefined;
    clearTimeout(this.deadline);
    clearTimeout(this.pingTimer);
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const {
      stopOn = [1008, 1003, [4400, 4499]],
      retryOn = [1001, 1006, [1011, 1014]],
    } = this.options;
    if (
      matches(code, stopOn) ||
      !matches(code, retryOn) ||
      this.options.reconnect === false
    ) {
      return this.stop(code, reason);
    }
    this.retry();
  }

  private retry(): void {
    if (this.phase === 'closed') return;
    const backoff = this.options.reconnect || {};
    if (this.attempt >= (backoff.retries ?? Infinity))
      return this.stop(1006, 'Gave up reconnecting');
    this.setState(this.welcome || this.attempt ? 'reconnecting' : 'connecting');
    this.timer = setTimeout(
      () => void this.open(),
      backoffDelay(this.attempt++, backoff),
    );
  }

  private stop(code: number, reason: string): void {
    for (const timer of [
      this.timer,
      this.deadline,
      this.pingTimer,
      this.ackTimer,
    ])
      clearTimeout(timer);
    (globalThis as { removeEventListener?: Function }).removeEventListener?.(
      'online',
      this.online,
    );
    this.setState('closed');
    for (const pending of this.requests.values()) {
      clearTimeout(pending.timer);
      pending.reject(new RequestError(503, `The client is closed (${code}).`));
    }
    this.requests.clear();
    for (const reader of this.readers.splice(0))
      reader({ value: undefined, done: true });
    this.emit('close', { code, reason });
  }

  private setState(state: ClientState): void {
    if (this.phase === state || this.phase === 'closed') return;
    this.phase = state;
    this.emit('state', state);
  }

  private emit<K extends keyof ClientEvents>(
    event: K,
    value: ClientEvents[K],
  ): void {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        (listener as Listener<ClientEvents[K]>)(value);
      } catch (error) {
        // a listener's error is the app's, not the connection's
        setTimeout(() => {
          throw error;
        });
      }
    }
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

function encode(data: unknown): string | Uint8Array {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data))
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const json = JSON.stringify(data) as string | undefined;
  if (json === undefined)
    throw new TypeError('Cannot send a value with no JSON form.');
  return json;
}

/** A frame's header line and payload; no line when there is no `\n` where a header ends. */
function split(data: unknown): { line?: string; payload: string | Uint8Array } {
  if (typeof data === 'string') {
    const newline = data.indexOf('\n');
    if (newline < 0 || newline >= MAX_HEADER) return { payload: data };
    return { line: data.slice(0, newline), payload: data.slice(newline + 1) };
  }
  const bytes = new Uint8Array(data as ArrayBuffer);
  const newline = bytes.subarray(0, MAX_HEADER).indexOf(10);
  if (newline < 0) return { payload: bytes };
  return {
    line: String.fromCharCode(...bytes.subarray(0, newline)),
    payload: bytes.slice(newline + 1),
  };
}

function parseJson<T>(payload: string | Uint8Array): T | undefined {
  try {
    return JSON.parse(new ClientMessage(payload).text) as T;
  } catch {
    return undefined;
  }
}

/** Stops listening to a socket we let go; its late error is swallowed (ws throws one with no listener). */
function detach(ws: WebSocketLike): void {
  ws.onclose = ws.onmessage = ws.onopen = null;
  ws.onerror = () => undefined;
}

function withParam(url: string, name: string, value: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}${name}=${encodeURIComponent(value)}`;
}

function requestId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } })
    .crypto;
  return (
    crypto?.randomUUID?.() ??
    `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`
  );
}
