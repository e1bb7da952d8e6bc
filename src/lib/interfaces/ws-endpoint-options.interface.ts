import type { Backplane } from '../backplane/backplane';
import type { IncomingMessage } from 'node:http';
import type { PerMessageDeflateOptions } from 'ws';
import type { IdempotencyStore } from '../reliable/idempotency-store';

/**
 * What happens when a message handed to `receive(Dto)` / `messages(Dto)` is not valid JSON or
 * fails the pipes: `'reply'` sends an error frame and skips the message, `'close'` closes with 1007.
 */
export type ValidationPolicy = 'reply' | 'close';

/** Ping/pong dead-peer detection. @publicApi */
export interface HeartbeatOptions {
  /**
   * ms between pings.
   * @default 30000
   */
  interval: number;
  /**
   * ms to wait for the pong before the connection is dropped.
   * @default 10000
   */
  timeout: number;
}

/**
 * Reliable mode: a session that survives a dropped connection. Messages both ways carry sequence
 * numbers and acks (the envelope that `nestjs-ws-endpoints/client` speaks); when the connection
 * drops, the session waits `resumeWindow` for its client, whose next connection gets every
 * message it missed, once, in order, and re-sends its own unacked ones, which reach the
 * handler once. The handler does not notice.
 * @publicApi
 */
export interface ReliableOptions {
  /**
   * ms a session whose connection dropped waits for its client; then it ends as a 1006.
   * @default 120000 (2 min)
   */
  resumeWindow?: number;
  /**
   * Bytes sent and not yet acked that a session keeps to send again; past it `send()` waits
   * for acks (one message larger than the bound still goes).
   * @default 262144 (256 KiB)
   */
  replayBuffer?: number;
}

/**
 * Requests processed once: a message the client sends with `request()` carries an id; the
 * handler answers it with `socket.reply(message, data)`, which is kept for `window` ms, so that a
 * duplicate (a retry after a drop) is answered again without reaching the handler.
 * @publicApi
 */
export interface RequestsOptions {
  /**
   * ms a request id and its reply are remembered.
   * @default 120000 (2 min)
   */
  window?: number;
}

/**
 * Which `Origin` headers may open a connection: `'same-host'` (the Origin's host must equal the
 * Host header when an Origin is sent), `'*'` (any), a list of origins (compared as origins:
 * scheme, host and port), a RegExp, or a function, which may be async. Requests without an
 * `Origin` header (non-browser clients) always pass.
 * @publicApi
 */
export type AllowedOrigins =
  | 'same-host'
  | '*'
  | string[]
  | RegExp
  | ((origin: string, request: IncomingMessage) => boolean | Promise<boolean>);

/**
 * Options of one WebSocket endpoint. Given to `WsEndpointsModule.forRoot()` they are the defaults of
 * every endpoint; given to `@Ws(path, options)` they override those defaults for that endpoint.
 *
 * @example
 * WsEndpointsModule.forRoot({ maxPayload: 64 * 1024, validation: 'close' })
 * @publicApi
 */
export interface WsEndpointOptions {
  /**
   * Largest message accepted, in bytes; a larger one closes the connection with 1009.
   * @default 65536 (64 KiB)
   */
  maxPayload?: number;
  /**
   * Most fragments one message may arrive in; more close the connection with 1008. Each
   * fragment waiting for the rest of its message costs its bytes and a buffer object.
   * @default 1024
   */
  maxFragments?: number;
  /**
   * What to do with a message that is not valid JSON or fails validation in `receive(Dto)`.
   * @default 'reply'
   */
  validation?: ValidationPolicy;
  /**
   * How long a peer has to answer our close frame before the connection is dropped, in ms.
   * @default 5000
   */
  closeTimeout?: number;
  /**
   * Ping/pong dead-peer detection, or `false` to turn it off.
   * @default { interval: 30000, timeout: 10000 }
   */
  heartbeat?: HeartbeatOptions | false;
  /**
   * Unread messages per connection at which the server stops reading the socket (TCP
   * backpressure) until the handler catches up.
   * @default 64
   */
  inboundQueue?: number;
  /**
   * Unread bytes per connection (counted after decompression) at which the server stops reading
   * the socket: by default one message of `maxPayload` pauses it, so a handler that does not
   * read holds about one message.
   * @default maxPayload
   */
  inboundQueueBytes?: number;
  /**
   * Bytes buffered for the peer above which `send()` waits for the socket to drain.
   * @default 1048576 (1 MiB)
   */
  sendHighWaterMark?: number;
  /**
   * ms a `send()` may wait for a peer that does not read before it is closed with 1013.
   * @default 10000
   */
  sendTimeout?: number;
  /**
   * Which `Origin` headers may connect; others get HTTP 403.
   * @default 'same-host'
   */
  allowedOrigins?: AllowedOrigins;
  /**
   * Subprotocols the endpoint speaks, preferred first. The first of them that the client offers is
   * selected and echoed; with none configured, no subprotocol is ever selected.
   * @default []
   */
  protocols?: string[];
  /**
   * Refuse (HTTP 400) a client that offers subprotocols, none of which is in `protocols`; when
   * `false` it is accepted without a subprotocol.
   * @default true
   */
  rejectUnknownProtocols?: boolean;
  /**
   * permessage-deflate compression, `true` or the `ws` options; negotiated with clients that offer it.
   * @default false
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /**
   * Reliable mode (`true` for the defaults): sessions that survive a dropped connection. Clients
   * speak the envelope (`nestjs-ws-endpoints/client` does); requests are on too.
   * @default false
   */
  reliable?: boolean | ReliableOptions;
  /**
   * Requests processed once, without reliable mode (`true` for the defaults). Clients speak the
   * envelope (`nestjs-ws-endpoints/client` does).
   * @default false
   */
  requests?: boolean | RequestsOptions;
  /**
   * The id of a session's user (what guards put on `request.user`): a resume token is bound to
   * it, and request ids are scoped to it. By default the user's `id`, `sub` or `userId`, or the
   * user itself when it is a string or a number.
   */
  userId?: (user: any) => string | number | undefined;
}

/** Options of `WsEndpointsModule.forRoot()`: the defaults of every endpoint, and the shutdown. @publicApi */
export interface WsEndpointsModuleOptions extends WsEndpointOptions {
  /**
   * ms an upgrade request has, from its arrival, to be accepted or refused: a middleware, guard,
   * pipe or interceptor that does not settle in time gets the client HTTP 503.
   * @default 10000
   */
  handshakeTimeout?: number;
  /**
   * ms that `app.close()` waits for handlers to finish after their sessions were closed with 1001;
   * then the remaining connections are dropped.
   * @default 10000
   */
  shutdownTimeout?: number;
  /**
   * Where request ids and replies are kept (`requests` and `reliable` endpoints): in this
   * instance's memory by default; a `RedisIdempotencyStore` shares them between instances.
   * @default new MemoryIdempotencyStore()
   */
  idempotencyStore?: IdempotencyStore;
  /**
   * What carries broadcasts and presence between the instances of the app: this instance's
   * memory by default; a `RedisBackplane` for several instances. The module closes it at shutdown.
   * @default new MemoryBackplane()
   */
  backplane?: Backplane;
  /** How presence (`socket.join(group, { meta })`) behaves. */
  presence?: PresenceOptions;
}

/** How presence behaves. @publicApi */
export interface PresenceOptions {
  /**
   * ms a member that left stays listed: when its user joins again within it (a reconnection, a
   * deploy), nobody hears a leave and a join.
   * @default 5000
   */
  grace?: number;
  /**
   * ms a member stays listed after its instance last said it is alive: the instance says so
   * every third of it, so the members of an instance that died leave every list within
   * `ttl` plus a third of it.
   * @default 15000
   */
  ttl?: number;
}

/** `WsEndpointOptions` with every default filled in. */
export type ResolvedWsEndpointOptions = Required<
  Omit<WsEndpointOptions, 'reliable' | 'requests'>
> & {
  reliable: Required<ReliableOptions> | false;
  /** On whenever `reliable` is. */
  requests: Required<RequestsOptions> | false;
};
