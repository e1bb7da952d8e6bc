import type { BackoffOptions } from './backoff';
import type { ClientMessage } from './client-message';
import type { Welcome } from '../protocol/envelope';

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
   * is dropped. The server acks after 32 messages, 32 KiB or 1 s: bounds below that make a fast
   * sender wait for acks even while connected. @default { messages: 1000, bytes: 1048576 }
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
  /**
   * Close codes after which it reconnects; any other ends it, and `stopOn` wins where both list
   * a code. @default [1001, 1006, [1011, 1014]]
   */
  retryOn?: CloseCodes;
}

/** The client's states. @publicApi */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ClientEvents {
  message: ClientMessage;
  state: ClientState;
  /** Said by the server on each connection: whether the session was resumed, its id. */
  session: Welcome;
  /**
   * A group's messages could not all be recovered after a reconnection (the session was gone and
   * the group's history no longer had them): the app should fetch the group's state again.
   */
  lost: { group: string };
  /** The client stopped: its close code and reason. */
  close: { code: number; reason: string };
}
