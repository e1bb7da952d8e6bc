/** A reply kept for a request id: what a duplicate of the request gets. @publicApi */
export interface StoredReply {
  /** `'r'` a reply, `'x'` a failure (`{"status","message"}` JSON). */
  kind: 'r' | 'x';
  /** The payload: text, or base64 when `binary`. */
  data: string;
  binary: boolean;
}

/** What `claim` found. @publicApi */
export type RequestClaim =
  | { status: 'new' }
  | { status: 'pending' }
  | { status: 'done'; reply: StoredReply };

/**
 * Where the requests of `requests` and `reliable` endpoints are remembered for `window` ms, so
 * that a duplicate is answered without reaching the handler: in memory by default; on Redis
 * (`RedisIdempotencyStore`) so that a retry that reaches another instance is recognized too.
 * Give one to `WsEndpointsModule.forRoot({ idempotencyStore })`.
 * @publicApi
 */
export interface IdempotencyStore {
  /**
   * Claims `key` for processing: `new` the first time (the caller processes it), `pending` while
   * another claim holds it, `done` with the reply once it was answered. A claim lasts `ttl` ms
   * unless it is extended.
   */
  claim(key: string, ttl: number): Promise<RequestClaim>;
  /**
   * Keeps a claim that has no reply yet for `ttl` ms more: its session is alive and still works
   * on it. A claim that is not extended (its instance crashed) lapses, and a retry is processed.
   */
  extend(key: string, ttl: number): Promise<void>;
  /** Keeps the reply to a claimed key for `ttl` ms, and wakes whoever waits for it. */
  complete(key: string, reply: StoredReply, ttl: number): Promise<void>;
  /** Gives a claim up unanswered (its session ended): the next duplicate is processed again. */
  release(key: string): Promise<void>;
  /**
   * Resolves with the reply once `key` completes; `undefined` when the claim is released or
   * expires, or after `timeout` ms.
   */
  wait(key: string, timeout: number): Promise<StoredReply | undefined>;
  /** Lets go of what it holds (connections it made); the module calls it at shutdown. */
  close?(): Promise<void>;
}
