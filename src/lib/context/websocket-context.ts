import { Logger, Type } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { types } from 'node:util';
import WebSocket from 'ws';
import {
  disconnectOf,
  WebSocketDisconnect,
} from '../errors/ws-disconnect.exception';
import { SLOW_CONSUMER, SOCKET_CLOSED } from '../messages';
import { CloseCode } from './close-code.enum';
import { assertValidClose } from './close-frame';
import type { HeartbeatMonitor } from './heartbeat';
import { DONE, InboundQueue, type ReceiveOptions } from './inbound-queue';
import { WebSocketMessage } from './websocket-message';

/** Options of `send()`. @publicApi */
export interface SendOptions {
  /** `false` sends a fragment: more of the same message follows. @default true */
  fin?: boolean;
}

/**
 * Turns one decoded message into the handler's DTO, or throws: the handler's pipes in a session,
 * plain JSON otherwise.
 */
export type MessageParser = (
  message: WebSocketMessage,
  metatype: Type,
) => Promise<unknown>;

/** How the context answers a message that `receive(Dto)` could not accept. */
export type RejectedMessageHandler = (
  context: WebSocketContext,
  error: unknown,
) => Promise<void>;

/** Flow control and checks of one connection, from the endpoint's options. */
export interface ContextSettings {
  parse: MessageParser;
  onRejectedMessage: RejectedMessageHandler;
  /** Unread messages above which reading pauses. */
  inboundQueue: number;
  /** Buffered bytes above which `send()` waits for the socket to drain. */
  sendHighWaterMark: number;
  /** ms `send()` waits for a drain before the peer is closed with 1013. */
  sendTimeout: number;
  /** Watches the peer for dead-peer detection; none when heartbeats are off. */
  heartbeat?: HeartbeatMonitor;
}

/** A request as the HTTP platform leaves it after routing and guards. */
export type UpgradeRequest = IncomingMessage & {
  params?: Record<string, string>;
  query?: Record<string, unknown>;
  user?: unknown;
};

/**
 * One accepted WebSocket connection, as the handler sees it: the handshake's data, an ordered
 * `receive()`, a `send()` with backpressure, and `close()`.
 *
 * @example
 * for await (const message of socket) await socket.send(`echo: ${message.text}`);
 * @publicApi
 */
export class WebSocketContext<
  TUser = any,
  TData extends object = Record<string, any>,
> implements AsyncIterable<WebSocketMessage> {
  // made on first use, as is `data`: an idle connection should cost little more than its socket
  private uuid?: string;
  private appData?: TData;
  /** The route's path parameters. */
  readonly params: Record<string, string>;
  private queryParams?: Record<string, unknown>;
  /** What the guards put on `request.user`. */
  readonly user: TUser;

  private readonly inbound: InboundQueue;
  // made on first use of `signal`: most handlers never touch it, and an AbortSignal is not small
  private abortController?: AbortController;
  private abortReason?: WebSocketDisconnect;
  // made on first use of `closed`: most sessions end without anyone waiting for it
  private closedPromise?: Promise<void>;
  private resolveClosed?: () => void;
  private drained?: Promise<void>;
  private disconnect?: WebSocketDisconnect;

  constructor(
    private readonly ws: WebSocket,
    /** The HTTP upgrade request. */
    readonly request: UpgradeRequest,
    private readonly settings: ContextSettings,
    /** The request as the HTTP platform routed it, when it wraps the upgrade request (Fastify). */
    routed: UpgradeRequest = request,
  ) {
    this.params = routed.params ?? {};
    // Express parses the query string on each read of `request.query`, so that is left for
    // first use; Fastify's routed request holds it parsed
    if (routed !== request) this.queryParams = routed.query ?? {};
    this.user = routed.user as TUser;
    this.inbound = new InboundQueue(ws, settings.inboundQueue);
    (ws as ContextualWebSocket)[CONTEXT] = this;
    ws.on('message', WebSocketContext.onMessage);
    ws.on('error', WebSocketContext.onError);
    ws.on('close', WebSocketContext.onClose);
    settings.heartbeat?.watch(ws);
  }

  /** The upgrade request's query parameters. */
  get query(): Record<string, unknown> {
    return (this.queryParams ??= this.request.query ?? {});
  }

  /** A unique id of this connection. */
  get id(): string {
    return (this.uuid ??= randomUUID());
  }

  /** Per-connection storage for the application. */
  get data(): TData {
    return (this.appData ??= {} as TData);
  }

  set data(data: TData) {
    this.appData = data;
  }

  /** The upgrade request's headers. */
  get headers(): IncomingHttpHeaders {
    return this.request.headers;
  }

  /** The negotiated subprotocol, `''` when none. */
  get protocol(): string {
    return this.ws.protocol;
  }

  /** `'open'`, `'closing'` once a close frame was sent or received, `'closed'` at the end. */
  get state(): 'open' | 'closing' | 'closed' {
    if (this.ws.readyState === WebSocket.OPEN) return 'open';
    return this.disconnect ? 'closed' : 'closing';
  }

  /** The close code, once closed (1006 when the connection dropped without a close frame). */
  get closeCode(): number | undefined {
    return this.disconnect?.code;
  }

  /** The close reason, once closed. */
  get closeReason(): string | undefined {
    return this.disconnect?.reason;
  }

  /** Aborted when the connection ends, or starts to end; pass it to whatever the handler awaits. */
  get signal(): AbortSignal {
    if (!this.abortController) {
      this.abortController = new AbortController();
      if (this.abortReason) this.abortController.abort(this.abortReason);
    }
    return this.abortController.signal;
  }

  /** Resolves once the connection is closed. */
  get closed(): Promise<void> {
    return (this.closedPromise ??= this.disconnect
      ? RESOLVED
      : new Promise((resolve) => (this.resolveClosed = resolve)));
  }

  /**
   * The next message, in order. Messages that arrived before the call are queued, none is lost.
   * With a class, the message is parsed as JSON and run through the handler's pipes
   * (`ValidationPipe` and the like); a message they reject is answered with an error frame and
   * skipped (policy `'reply'`) or closes the connection with 1007 (policy `'close'`).
   * @throws WebSocketDisconnect once the connection is closed
   * @example const message = await socket.receive({ timeout: 5000 });
   * @example const order = await socket.receive(CreateOrderDto);
   */
  receive(options?: ReceiveOptions): Promise<WebSocketMessage>;
  receive<T>(metatype: Type<T>, options?: ReceiveOptions): Promise<T>;
  async receive<T>(
    metatypeOrOptions?: Type<T> | ReceiveOptions,
    options?: ReceiveOptions,
  ): Promise<WebSocketMessage | T> {
    if (typeof metatypeOrOptions !== 'function') {
      return this.inbound.next(metatypeOrOptions);
    }
    for (;;) {
      const message = await this.inbound.next(options);
      try {
        return (await this.settings.parse(message, metatypeOrOptions)) as T;
      } catch (error) {
        await this.settings.onRejectedMessage(this, error);
      }
    }
  }

  /**
   * The messages as DTOs, each through the handler's pipes, until the connection closes.
   * @example for await (const msg of socket.messages(ChatMessageDto)) await socket.send(msg.text);
   */
  messages<T>(metatype: Type<T>): AsyncIterable<T> {
    return {
      [Symbol.asyncIterator]: () => new DtoIterator(this, metatype),
    };
  }

  /** Iterates over the messages until the connection closes; the loop then ends quietly. */
  [Symbol.asyncIterator](): AsyncIterator<WebSocketMessage> {
    return new MessageIterator(this.inbound);
  }

  /**
   * Sends a message: a string as text, a Buffer, ArrayBuffer or typed array as binary, a received
   * `WebSocketMessage` as it came (its bytes, text or binary, not decoded again), anything else
   * as JSON text. Resolves once the frame is handed to the socket; while more than
   * `sendHighWaterMark` bytes wait for the peer, it first waits for them to drain, and a peer
   * that does not read for `sendTimeout` is closed with 1013.
   * @throws WebSocketDisconnect when the socket is closing or closed
   * @example await socket.send({ type: 'welcome', id: socket.id });
   * @example for await (const message of socket) await socket.send(message); // an echo
   */
  send(data: unknown, options?: SendOptions): Promise<void> {
    const received = data instanceof WebSocketMessage;
    const binary = received
      ? data.type === 'binary'
      : ArrayBuffer.isView(data) || types.isAnyArrayBuffer(data);
    const payload = received
      ? data.data
      : typeof data === 'string' || binary
        ? data
        : JSON.stringify(data);
    if (payload === undefined) {
      return Promise.reject(
        new TypeError(`Cannot send ${String(data)}: it has no JSON form.`),
      );
    }
    const frame =
      SEND_OPTIONS[Number(binary) * 2 + Number(options?.fin ?? true)];
    if (this.ws.bufferedAmount > this.settings.sendHighWaterMark) {
      return this.whenDrained().then(() => this.write(payload, frame));
    }
    return this.write(payload, frame);
  }

  /**
   * Closes the connection and resolves once the peer has answered the close frame (or after
   * `closeTimeout`, when the connection is dropped).
   * @param code a close code an endpoint may send
   * @param reason at most 123 bytes of UTF-8
   * @throws RangeError for a reserved or invalid code, or a reason that is too long, before anything is sent
   * @example await socket.close(CloseCode.PolicyViolation, 'Not allowed');
   */
  async close(code: number = CloseCode.Normal, reason = ''): Promise<void> {
    assertValidClose(code, reason);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(code, reason);
    return this.closed;
  }

  /** Drops the connection without a close handshake. */
  terminate(): void {
    this.ws.terminate();
  }

  /**
   * Starts closing with `code` and aborts `signal` at once, without waiting for the peer.
   * @internal for the shutdown and the slow-consumer check
   */
  end(code: number, reason: string): void {
    this.abort(disconnectOf(code, reason));
    void this.close(code, reason);
  }

  private write(
    payload: unknown,
    frame: { binary: boolean; fin: boolean },
  ): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN || this.abortReason) {
      return Promise.reject(this.closedError('send'));
    }
    this.ws.send(payload as string | Buffer, frame);
    return RESOLVED;
  }

  /** One wait for the socket to drain, shared by every pending `send()`. */
  private whenDrained(): Promise<void> {
    this.drained ??= new Promise<void>((resolve, reject) => {
      const socket = this.request.socket;
      const done = () => {
        clearTimeout(timer);
        socket.off('drain', onDrain);
        this.signal.removeEventListener('abort', onAbort);
        this.drained = undefined;
      };
      const onDrain = () => (done(), resolve());
      const onAbort = () => (done(), reject(this.closedError('send')));
      const timer = setTimeout(() => {
        onAbort();
        this.end(CloseCode.TryAgainLater, SLOW_CONSUMER);
      }, this.settings.sendTimeout);
      socket.once('drain', onDrain);
      this.signal.addEventListener('abort', onAbort, { once: true });
    });
    return this.drained;
  }

  private abort(reason: WebSocketDisconnect): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.abortController?.abort(reason);
  }

  // the socket's listeners, shared by every connection: the socket is `this`, its context a property
  private static onMessage(
    this: WebSocket,
    data: Buffer,
    isBinary: boolean,
  ): void {
    contextOf(this).inbound.push(
      new WebSocketMessage(data, isBinary ? 'binary' : 'text'),
    );
  }

  // ws closes the connection itself after a protocol error (1002, 1007, 1009); 'close' follows
  private static onError(this: WebSocket, error: Error): void {
    new Logger(WebSocketContext.name).debug(
      `${contextOf(this).id}: ${error.message}`,
    );
  }

  private static onClose(this: WebSocket, code: number, reason: Buffer): void {
    const context = contextOf(this);
    context.disconnect = disconnectOf(code, reason.toString());
    context.abort(context.disconnect);
    context.inbound.end(() => context.closedError('receive'));
    context.settings.heartbeat?.forget(this);
    context.resolveClosed?.();
  }

  private closedError(action: string): WebSocketDisconnect {
    const ended = this.disconnect ?? this.abortReason;
    const message = ended
      ? SOCKET_CLOSED(action, ended.code)
      : `Cannot ${action}: the socket is closing.`;
    return disconnectOf(
      ended?.code ?? CloseCode.Abnormal,
      ended?.reason ?? '',
      message,
    );
  }
}

const CONTEXT = Symbol('ws-endpoints:context');
type ContextualWebSocket = WebSocket & { [CONTEXT]: WebSocketContext };

const contextOf = (ws: WebSocket) => (ws as ContextualWebSocket)[CONTEXT];

const RESOLVED = Promise.resolve();
/** ws's frame options, by binary × fin, made once rather than per message. */
const SEND_OPTIONS = [
  { binary: false, fin: false },
  { binary: false, fin: true },
  { binary: true, fin: false },
  { binary: true, fin: true },
].map((options) => Object.freeze(options));

/**
 * `for await` over the messages. Hand-written rather than an async generator: one promise a
 * message instead of four, on the hottest path there is; and a class rather than an object of
 * closures, as one lives as long as its loop, which is usually the connection.
 */
class MessageIterator implements AsyncIterator<WebSocketMessage> {
  constructor(private readonly inbound: InboundQueue) {}

  next(): Promise<IteratorResult<WebSocketMessage>> {
    return this.inbound.nextResult();
  }

  return(): Promise<IteratorReturnResult<undefined>> {
    return Promise.resolve(DONE);
  }
}

/** `for await` over `receive(metatype)`, which ends at the disconnect. */
class DtoIterator<T> implements AsyncIterator<T> {
  constructor(
    private readonly context: WebSocketContext,
    private readonly metatype: Type<T>,
  ) {}

  next(): Promise<IteratorResult<T>> {
    return this.context.receive(this.metatype).then(toResult, endAtDisconnect);
  }

  return(): Promise<IteratorReturnResult<undefined>> {
    return Promise.resolve(DONE);
  }
}

function toResult<T>(value: T): IteratorYieldResult<T> {
  return { value, done: false };
}

function endAtDisconnect(error: unknown): IteratorReturnResult<undefined> {
  if (error instanceof WebSocketDisconnect) return DONE;
  throw error;
}
