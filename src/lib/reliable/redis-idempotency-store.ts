import type { Redis } from 'ioredis';
import type {
  IdempotencyStore,
  RequestClaim,
  StoredReply,
} from './idempotency-store';

/** Claims a key: nil when this call claimed it, `''` while another claim holds it, else the reply. */
const CLAIM = `
if redis.call('SET', KEYS[1], '', 'PX', ARGV[1], 'NX') then return false end
return redis.call('GET', KEYS[1])`;

/** Extends a claim that has no reply yet. */
const EXTEND = `
if redis.call('GET', KEYS[1]) == '' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0`;

/** Drops a claim that has no reply, and tells the waiters. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == '' then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[1], KEYS[1])
end
return 0`;

/** Options of `RedisIdempotencyStore`. @publicApi */
export interface RedisIdempotencyStoreOptions {
  /** Prefix of its keys and of its channel. @default 'ws-endpoints:requests:' */
  prefix?: string;
}

/**
 * An `IdempotencyStore` on Redis (ioredis), shared by every instance of the app: a retry that
 * reaches another instance, after a failover or while the first is still working on it, is
 * recognized, waits for the first answer and is never processed twice. A claim is one atomic
 * script; a reply is kept with the window as its TTL and announced on a channel, which the
 * waiting instances hear on a connection of their own (made on first wait, closed by `close()`,
 * which the module calls at shutdown). The client you pass stays yours to close.
 * @example
 * WsEndpointsModule.forRoot({ idempotencyStore: new RedisIdempotencyStore(new Redis(process.env.REDIS_URL)) })
 * @publicApi
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly prefix: string;
  private readonly channel: string;
  private subscriber?: Redis;
  private subscribed?: Promise<unknown>;
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(
    private readonly redis: Redis,
    { prefix = 'ws-endpoints:requests:' }: RedisIdempotencyStoreOptions = {},
  ) {
    this.prefix = prefix;
    this.channel = `${prefix}done`;
  }

  async claim(key: string, ttl: number): Promise<RequestClaim> {
    const value = (await this.redis.eval(
      CLAIM,
      1,
      this.prefix + key,
      Math.max(1, Math.ceil(ttl)),
    )) as string | null;
    if (value === null) return { status: 'new' };
    if (value === '') return { status: 'pending' };
    return { status: 'done', reply: JSON.parse(value) as StoredReply };
  }

  async extend(key: string, ttl: number): Promise<void> {
    await this.redis.eval(
      EXTEND,
      1,
      this.prefix + key,
      Math.max(1, Math.ceil(ttl)),
    );
  }

  async complete(key: string, reply: StoredReply, ttl: number): Promise<void> {
    const stored = this.prefix + key;
    await this.redis
      .multi()
      .set(stored, JSON.stringify(reply), 'PX', Math.max(1, Math.ceil(ttl)))
      .publish(this.channel, stored)
      .exec();
  }

  async release(key: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.prefix + key, this.channel);
  }

  async wait(key: string, timeout: number): Promise<StoredReply | undefined> {
    const stored = this.prefix + key;
    await this.subscribe();
    return new Promise((resolve, reject) => {
      let waiters = this.waiters.get(stored);
      if (!waiters) this.waiters.set(stored, (waiters = new Set()));
      const done = (reply?: StoredReply) => {
        clearTimeout(timer);
        waiters.delete(look);
        if (!waiters.size) this.waiters.delete(stored);
        resolve(reply);
      };
      // looks at the key: a reply ends the wait, a released claim too; a claim still held waits on
      const look = () => {
        this.redis.get(stored).then((value) => {
          if (value === null) done();
          else if (value !== '') done(JSON.parse(value) as StoredReply);
        }, reject);
      };
      const timer = setTimeout(done, Math.max(0, timeout));
      waiters.add(look);
      // what completed before the subscription took hold is found by looking once
      look();
    });
  }

  /** Closes the connection it listens on. */
  async close(): Promise<void> {
    const subscriber = this.subscriber;
    this.subscriber = this.subscribed = undefined;
    await subscriber?.quit().catch(() => subscriber.disconnect());
  }

  private subscribe(): Promise<unknown> {
    if (!this.subscribed) {
      const subscriber = this.redis.duplicate();
      this.subscriber = subscriber;
      subscriber.on('message', (_channel: string, stored: string) => {
        for (const look of this.waiters.get(stored) ?? []) look();
      });
      // ioredis reconnects by itself; what it reports meanwhile is not ours to crash on
      subscriber.on('error', () => undefined);
      this.subscribed = subscriber.subscribe(this.channel);
    }
    return this.subscribed;
  }
}
