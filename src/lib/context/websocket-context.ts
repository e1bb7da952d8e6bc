import { Type } from '@nestjs/common';
import { failureFor } from '../session/close-for-error';
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { types } from 'node:util';
import type WebSocket from 'ws';
import { WebSocketDisconnect } from '../errors/ws-disconnect.exception';
import {
  DONE,
  InboundQueue,
  receiveSignal,
  type ReceiveOptions,
} from '../transport/inbound-queue';
import {
  SENT,
  TransportSettings,
  WsTransport,
} from '../transport/ws-transport';
import { EnvelopeLink, type EnvelopeSettings } from '../reliable/envelope-link';
import {
  Frame,
  type GroupPosition,
  isGroupName,
  parseSince,
  RESUME_PARAM,
  positionField,
  SINCE_PARAM,
} from '../protocol/envelope';
import {
  RequestTracker,
  type RequestSettings,
} from '../reliable/request-tracker';
import {
  INVALID_GROUP,
  INVALID_META,
  NOT_A_REQUEST,
  SLOW_CONSUMER,
} from '../messages';
import { CloseCode } from './close-code.enum';
import { assertValidClose } from './close-frame';
import type { SessionLink } from './session-link';
import type { JoinResult } from '../groups/group-hub';
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
  message: WebSocketMessage,
) => Promise<void>;

/** Where a session whose id has been read can be found by it. */
export interface SessionIndex {
  index(context: WebSocketContext, id: string): void;
}

/** How the sessions of an endpoint with `reliable` or `requests` speak the envelope. */
export interface SessionEnvelope extends EnvelopeSettings {
  requests: RequestSettings;
  /** The endpoint's name: resume tokens and request ids belong to it. */
  endpoint: string;
}

/** What every connection of an endpoint shares: flow control, the message pipes, the index. */
export interface ContextSettings extends TransportSettings {
  parse: MessageParser;
  onRejectedMessage: RejectedMessageHandler;
  sessions?: SessionIndex;
  /** Set when the endpoint speaks the envelope (`reliable` or `requests`). */
  envelope?: SessionEnvelope;
  /** The user's id, as the endpoint's `userId` option finds it; never throws. */
  userId(user: unknown): string | undefined;
  /** Where the sessions' groups are kept. */
  groups: SessionGroups;
}

/** What keeps the sessions' groups. */
export interface SessionGroups {
  join(
    context: WebSocketContext,
    group: string,
    meta: unknown,
    watch: boolean,
  ): Promise<JoinResult>;
  leave(context: WebSocketContext, group: string): void;
}

/** Options of `socket.join()`. @publicApi */
export interface JoinOptions {
  /**
   * Lists the session in the group's presence (`Presence`), with this metadata (JSON), on every
   * instance; without it, the session is a member but not listed.
   */
  meta?: unknown;
  /**
   * Sends the session the group's presence, as `Presence.watch()` emits it (a `PresenceEvent`,
   * JSON): its members, then each join and leave, until the session leaves the group.
   */
  watch?: boolean;
}

/** A request as the HTTP platform leaves it after routing and guards. */
export type UpgradeRequest = IncomingMessage & {
  params?: Record<string, string>;
  query?: Record<string, unknown>;
  user?: unknown;
};

/**
 * One WebSocket session, as the handler sees it: the handshake's data, an ordered `receive()`, a
 * `send()` with backpressure, and `close()`. The connection under it is its transport.
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

  private readonly transport: SessionLink;
  private readonly requests?: RequestTracker;
  private failedResume = false;
  // made on first use, as `data` is: most sessions join no group
  private groupNames?: Set<string>;
  /** Where the client left each group, when it lost its session (reliable mode), until joined. */
  private positions?: Map<string, GroupPosition>;
  private knownUserId?: string | null;
  // made on first use of `signal`: most handlers never touch it, and an AbortSignal is not small
  private abortController?: AbortController;
  private abortReason?: WebSocketDisconnect;
  // made on first use of `closed`: most sessions end without anyone waiting for it
  private closedPromise?: Promise<void>;
  private resolveClosed?: () => void;

  constructor(
    ws: WebSocket,
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
    const { envelope } = settings;
    if (!envelope) {
      this.transport = new WsTransport(ws, request.socket, settings, this);
      return;
    }
    const user = this.userId;
    const link = new EnvelopeLink(
      settings,
      envelope,
      this,
      envelope.endpoint,
      user,
    );
    this.transport = link;
    this.requests = new RequestTracker(
      link,
      envelope.requests,
      `${envelope.endpoint}\u0000${user ?? ''}`,
    );
    link.attach(ws, request.socket, 0, false);
  }

  /** The id of the session's user, as the endpoint's `userId` option finds it. */
  get userId(): string | undefined {
    if (this.knownUserId === undefined) {
      this.knownUserId = this.settings.userId(this.user) ?? null;
    }
    return this.knownUserId ?? undefined;
  }

  /** The groups this session is in (`join`). */
  get groups(): ReadonlySet<string> {
    return this.groupNames ?? NO_GROUPS;
  }

  /**
   * Joins `group`, on every instance: a `Broadcaster`'s `to(group)` reaches this session, until
   * it leaves or the session ends (a reliable session stays in its groups while it waits for its
   * client). With `meta`, the session is listed in the group's presence. In reliable mode, a
   * client that lost its session gets what the group sent since its last message first: all of
   * it, or none and `'lost'` (`recovered: false`). Membership starts at once; the promise
   * settles when the recovery is done, and never rejects. Joining a group again changes only the
   * session's presence: its `meta`, or without one, no listing.
   * @example await socket.join(`room:${room}`, { meta: { name: user.name } });
   * @throws TypeError for a name that is not 1–128 characters of well-formed Unicode, or `meta`
   * with no JSON form (or whose `toJSON` throws)
   */
  join(group: string, options: JoinOptions = {}): Promise<JoinResult> {
    if (!isGroupName(group)) throw new TypeError(INVALID_GROUP(group));
    const { meta, watch = false } = options;
    if (meta !== undefined && !hasJsonForm(meta)) {
      throw new TypeError(INVALID_META);
    }
    if (this.state === 'closed') return NOT_JOINED;
    (this.groupNames ??= new Set()).add(group);
    return this.settings.groups.join(this, group, meta, watch);
  }

  /** Leaves `group`. */
  leave(group: string): void {
    if (!this.groupNames?.delete(group)) return;
    this.settings.groups.leave(this, group);
  }

  /**
   * Sends a payload encoded once for many sessions, unless this one is slow: then it is closed
   * with 1013 rather than made to hold more. Whether it was handed over. A reliable session
   * tells its client the group and the message's position in it, to recover from.
   * @internal for the broadcaster
   */
  deliver(
    payload: string | Buffer,
    binary: boolean,
    group?: string,
    position?: GroupPosition,
  ): boolean {
    if (this.transport.congested) {
      this.transport.end(CloseCode.TryAgainLater, SLOW_CONSUMER);
      return false;
    }
    const link = group && position && this.link;
    const sent =
      link && link.reliable
        ? link.sendFrame(
            Frame.Group,
            payload,
            binary,
            positionField(group!, position!),
          )
        : this.transport.send(payload, binary, true);
    // most sends are taken at once: no promise of our own for each member then
    if (sent !== SENT) sent.catch(ignore);
    return true;
  }

  /** Tells a reliable session's client where a group stands (`s`), or that it lost some (`l`). @internal */
  groupFrame(
    kind: typeof Frame.GroupPosition | typeof Frame.GroupLost,
    group: string,
    position: GroupPosition,
  ): void {
    const link = this.link;
    if (!link?.reliable || this.state === 'closed') return;
    link
      .sendFrame(kind, '', false, positionField(group, position))
      .catch(ignore);
  }

  /**
   * Where this session's client left `group` when it lost its last session (`ws_since`): once,
   * for the join that recovers it. @internal
   */
  takePosition(group: string): GroupPosition | undefined {
    if (!this.positions) {
      this.positions = new Map();
      const given = this.query[SINCE_PARAM];
      for (const value of Array.isArray(given) ? given : [given]) {
        const since = typeof value === 'string' ? parseSince(value) : undefined;
        if (since) this.positions.set(since.group, since.position);
      }
    }
    const position = this.positions.get(group);
    this.positions.delete(group);
    return position;
  }

  /** The reliable session's link, for a connection that resumes it. @internal */
  get link(): EnvelopeLink | undefined {
    return this.transport instanceof EnvelopeLink ? this.transport : undefined;
  }

  /**
   * In reliable mode: whether the session has continued on a new connection after its
   * connection dropped (the handler did not notice; nothing was lost).
   */
  get resumed(): boolean {
    return (this.link?.resumes ?? 0) > 0;
  }

  /**
   * In reliable mode: whether this new session's client asked to resume one that this instance
   * no longer has (its window ran out, or another instance held it, which then stopped). What
   * that session had sent and not delivered is lost; the client is told (`resumed: false`).
   */
  get resumeFailed(): boolean {
    return this.failedResume;
  }

  /**
   * The id of the session the client had before, when it asked to resume one this instance did
   * not have (its resume token names it): what excluded that session excludes this one when the
   * client recovers its groups. @internal
   */
  get formerId(): string | undefined {
    if (!this.failedResume) return undefined;
    const token = this.query[RESUME_PARAM];
    return typeof token === 'string' ? token.split('.')[0] : undefined;
  }

  /** @internal */
  markResumeFailed(): void {
    this.failedResume = true;
  }

  /** The upgrade request's query parameters. */
  get query(): Record<string, unknown> {
    return (this.queryParams ??= this.request.query ?? {});
  }

  /**
   * A unique id of this session; `WebSocketSessions.get(id)` finds it. A UUID, or on a
   * `reliable` or `requests` endpoint the session id its client is told (`client.session`).
   */
  get id(): string {
    if (!this.uuid) {
      this.uuid = this.link?.id ?? randomUUID();
      this.settings.sessions?.index(this, this.uuid);
    }
    return this.uuid;
  }

  /** The id, if it has been read, without making one. @internal */
  get knownId(): string | undefined {
    return this.uuid;
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

  /** The peer's IP address, as the socket sees it (a proxy's, behind one). */
  get remoteAddress(): string | undefined {
    return this.request.socket.remoteAddress;
  }

  /** The negotiated subprotocol, `''` when none. */
  get protocol(): string {
    return this.transport.protocol;
  }

  /**
   * `'open'`, `'closing'` once a close frame was sent or received, `'closed'` at the end; in
   * reliable mode `'reconnecting'` while the connection is gone and the client may resume.
   */
  get state(): 'open' | 'reconnecting' | 'closing' | 'closed' {
    switch (this.transport.state) {
      case 'open':
        return 'open';
      case 'reconnecting':
        return 'reconnecting';
      case 'closeSent':
      case 'closeReceived':
        return 'closing';
      default:
        return 'closed';
    }
  }

  /** The close code, once closed (1006 when the connection dropped without a close frame). */
  get closeCode(): number | undefined {
    return this.transport.disconnect?.code;
  }

  /** The close reason, once closed. */
  get closeReason(): string | undefined {
    return this.transport.disconnect?.reason;
  }

  /** Bytes waiting to be sent to the peer: queued for compression or in the socket's buffer. */
  get bufferedAmount(): number {
    return this.transport.bufferedAmount;
  }

  /**
   * Aborted when the session ends, or starts to end; pass it to whatever the handler awaits. In
   * reliable mode a dropped connection does not abort it, only the end of the resume window.
   */
  get signal(): AbortSignal {
    if (!this.abortController) {
      this.abortController = new AbortController();
      if (this.abortReason) this.abortController.abort(this.abortReason);
    }
    return this.abortController.signal;
  }

  /** Resolves once the connection is closed; never rejects. */
  get closed(): Promise<void> {
    return (this.closedPromise ??= this.transport.disconnect
      ? RESOLVED
      : new Promise((resolve) => (this.resolveClosed = resolve)));
  }

  /**
   * The next message, in order. Messages that arrived before the call are queued, none is lost.
   * With a class, the message is parsed as JSON and run through the handler's pipes
   * (`ValidationPipe` and the like); a message they reject is answered with an error frame and
   * skipped (policy `'reply'`) or closes the connection with 1007 (policy `'close'`).
   * `options.timeout` is a deadline for the whole call, skipped messages included.
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
      const signal = receiveSignal(metatypeOrOptions);
      if (!this.requests) return this.transport.inbound.next(signal);
      return this.nextAdmitted(signal);
    }
    const signal = receiveSignal(options);
    for (;;) {
      const message = await this.nextAdmitted(signal);
      try {
        return (await this.settings.parse(message, metatypeOrOptions)) as T;
      } catch (error) {
        await this.settings.onRejectedMessage(this, error, message);
      }
      // queued messages are served before the signal is looked at: a stream of rejected ones
      // would otherwise outlive the deadline
      if (signal?.aborted) throw signal.reason;
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
    return this.requests
      ? new RequestAwareIterator(this.transport.inbound, this.requests)
      : new MessageIterator(this.transport.inbound);
  }

  /** The next message the handler may see: a duplicate request is answered and skipped. */
  private async nextAdmitted(signal?: AbortSignal): Promise<WebSocketMessage> {
    for (;;) {
      const message = await this.transport.inbound.next(signal);
      if (message.id === undefined || (await this.requests!.admit(message))) {
        return message;
      }
      if (signal?.aborted) throw signal.reason;
    }
  }

  /**
   * Sends a message: a string as text, a Buffer, ArrayBuffer or typed array as binary, a received
   * `WebSocketMessage` as it came (its bytes, text or binary, not decoded again), anything else
   * as JSON text. Resolves once the frame is handed to the socket; while more than
   * `sendHighWaterMark` bytes wait for the peer, it first waits for them to drain, and a peer
   * that does not read for `sendTimeout` is closed with 1013. Never throws: a value with no JSON
   * form (a BigInt, a cycle, a `toJSON` that throws, `undefined`) is a rejected promise.
   * @throws WebSocketDisconnect when the socket is closing or closed
   * @example await socket.send({ type: 'welcome', id: socket.id });
   * @example for await (const message of socket) await socket.send(message); // an echo
   */
  send(data: unknown, options?: SendOptions): Promise<void> {
    let fin: boolean;
    let encoded: Encoded;
    try {
      fin = options?.fin !== false;
      encoded = encode(data);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.transport.send(encoded.payload, encoded.binary, fin);
  }

  /**
   * Answers a request (a message with an `id`, sent with the client's `request()`). The reply is
   * kept in the idempotency store for the endpoint's window first, so a duplicate of the request,
   * a retry after a drop, even on another instance sharing the store, gets it again without
   * reaching the handler. `data` is encoded as for `send()`. Never throws: a message that is no
   * request, a second reply or a value with no JSON form is a rejected promise.
   * @example for await (const m of socket) if (m.id) await socket.reply(m, await this.orders.place(m.json()));
   */
  reply(message: WebSocketMessage, data: unknown): Promise<void> {
    try {
      const { payload, binary } = encode(data);
      return this.tracker(message).reply(message, payload, binary);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Answers a request with a failure: the client's `request()` rejects with its status and
   * message. An `HttpException` keeps its status, anything else is a 500 without its message.
   * Kept for duplicates as `reply()` is.
   * @example await socket.replyError(message, new NotFoundException('No such order'));
   */
  replyError(message: WebSocketMessage, error: unknown): Promise<void> {
    try {
      // the failure frame's body is `{"status","message"}`
      const body = JSON.stringify(failureFor(error));
      return this.tracker(message).reply(message, body, false, Frame.Failure);
    } catch (failed) {
      return Promise.reject(failed);
    }
  }

  private tracker(message: WebSocketMessage): RequestTracker {
    if (!this.requests || !(message instanceof WebSocketMessage)) {
      throw new TypeError(NOT_A_REQUEST(nameOf(message)));
    }
    return this.requests;
  }

  /**
   * Closes the connection; the promise resolves once the peer has answered the close frame (or
   * after `closeTimeout`, when the connection is dropped) and never rejects, so it need not be
   * awaited.
   * @param code a close code an endpoint may send
   * @param reason at most 123 bytes of UTF-8
   * @throws RangeError for a reserved or invalid code, or a reason that is too long, before anything is sent
   * @example await socket.close(CloseCode.PolicyViolation, 'Not allowed');
   */
  close(code: number = CloseCode.Normal, reason = ''): Promise<void> {
    assertValidClose(code, reason);
    this.transport.close(code, reason);
    return this.closed;
  }

  /**
   * Drops the connection without a close handshake. In reliable mode this ends the session too:
   * the client cannot resume it.
   */
  terminate(): void {
    this.transport.terminate();
  }

  /**
   * Starts closing with `code` and aborts `signal` at once, without waiting for the peer.
   * @internal for the shutdown
   */
  end(code: number, reason: string): void {
    this.transport.end(code, reason);
  }

  /** @internal */
  transportEnding(reason: WebSocketDisconnect): void {
    this.abort(reason);
  }

  /**
   * The session is over: closed, and its handler settled. Requests it claimed and did not answer
   * are let go, so that a retry is processed; a reply made until now was kept for it.
   * @internal
   */
  released(): void {
    this.requests?.release();
  }

  /** @internal */
  transportClosed(disconnect: WebSocketDisconnect): void {
    this.settings.metrics?.sessionClosed(disconnect.code);
    for (const group of this.groupNames ?? []) {
      this.settings.groups.leave(this, group);
    }
    this.groupNames = undefined;
    this.abort(disconnect);
    this.resolveClosed?.();
  }

  private abort(reason: WebSocketDisconnect): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.abortController?.abort(reason);
  }
}

const RESOLVED = Promise.resolve();

/** Whether `value` can be sent as JSON: `JSON.stringify` neither throws nor gives nothing. */
function hasJsonForm(value: unknown): boolean {
  try {
    return JSON.stringify(value) !== undefined;
  } catch {
    return false;
  }
}
const NOT_JOINED = Promise.resolve({ recovered: true, missed: 0 });
const NO_GROUPS: ReadonlySet<string> = new Set();
function ignore(): void {}

interface Encoded {
  payload: string | Buffer;
  binary: boolean;
}

/**
 * A value as a frame's payload: a string as text, bytes as binary, a received message as it
 * came, anything else as JSON text.
 * @throws TypeError for a value with no JSON form, or what its `toJSON` throws
 */
export function encode(data: unknown): Encoded {
  if (data instanceof WebSocketMessage) {
    return { payload: data.data, binary: data.type === 'binary' };
  }
  if (typeof data === 'string') return { payload: data, binary: false };
  if (ArrayBuffer.isView(data)) {
    // a Uint8Array (a Buffer) goes as it is; other views as the bytes they see
    const bytes =
      data instanceof Uint8Array
        ? data
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return { payload: bytes as Buffer, binary: true };
  }
  if (types.isAnyArrayBuffer(data)) {
    return { payload: Buffer.from(data), binary: true };
  }
  const json = JSON.stringify(data) as string | undefined;
  if (json === undefined) {
    throw new TypeError(`Cannot send ${nameOf(data)}: it has no JSON form.`);
  }
  return { payload: json, binary: false };
}

function nameOf(value: unknown): string {
  return typeof value === 'function'
    ? 'a function'
    : typeof value === 'symbol'
      ? 'a symbol'
      : String(value);
}

/**
 * `for await` over the messages. Hand-written rather than an async generator: one promise a
 * message instead of four, on the hottest path there is; and a class rather than an object of
 * closures, as one lives as long as its loop, which is usually the connection.
 */
class MessageIterator implements AsyncIterator<WebSocketMessage> {
  constructor(protected readonly inbound: InboundQueue) {}

  next(): Promise<IteratorResult<WebSocketMessage>> {
    return this.inbound.nextResult();
  }

  return(): Promise<IteratorReturnResult<undefined>> {
    return Promise.resolve(DONE);
  }
}

/** `for await` on a session with requests: a duplicate request is answered and skipped. */
class RequestAwareIterator extends MessageIterator {
  constructor(
    inbound: InboundQueue,
    private readonly requests: RequestTracker,
  ) {
    super(inbound);
  }

  next(): Promise<IteratorResult<WebSocketMessage>> {
    return this.inbound.nextResult().then(this.admitted);
  }

  private readonly admitted = (
    result: IteratorResult<WebSocketMessage>,
  ):
    | IteratorResult<WebSocketMessage>
    | Promise<IteratorResult<WebSocketMessage>> =>
    result.done || result.value.id === undefined
      ? result
      : this.requests
          .admit(result.value)
          .then((admitted) => (admitted ? result : this.next()));
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
