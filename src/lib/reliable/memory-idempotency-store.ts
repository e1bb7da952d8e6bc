import type {
  IdempotencyStore,
  RequestClaim,
  StoredReply,
} from './idempotency-store';

interface Entry {
  expires: number;
  reply?: StoredReply;
  waiters?: Array<(reply: StoredReply | undefined) => void>;
}

/**
 * The default `IdempotencyStore`: this instance's memory. It holds each request id and its
 * reply for the window, so its size is the request rate × the window; expired entries go as new
 * ones come (the map keeps insertion order, which is expiry order for one window).
 * @publicApi
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly entries = new Map<string, Entry>();

  claim(key: string, ttl: number): Promise<RequestClaim> {
    const now = Date.now();
    this.expire(now);
    const entry = this.entries.get(key);
    if (entry && entry.expires > now) {
      return Promise.resolve(
        entry.reply
          ? { status: 'done', reply: entry.reply }
          : { status: 'pending' },
      );
    }
    this.entries.delete(key);
    this.entries.set(key, { expires: now + ttl });
    return Promise.resolve({ status: 'new' });
  }

  extend(key: string, ttl: number): Promise<void> {
    const entry = this.entries.get(key);
    if (entry && !entry.reply) entry.expires = Date.now() + ttl;
    return Promise.resolve();
  }

  complete(key: string, reply: StoredReply, ttl: number): Promise<void> {
    const waiters = this.entries.get(key)?.waiters;
    this.entries.delete(key);
    this.entries.set(key, { expires: Date.now() + ttl, reply });
    for (const wake of waiters ?? []) wake(reply);
    return Promise.resolve();
  }

  release(key: string): Promise<void> {
    const entry = this.entries.get(key);
    if (entry && !entry.reply) {
      this.entries.delete(key);
      for (const wake of entry.waiters ?? []) wake(undefined);
    }
    return Promise.resolve();
  }

  wait(key: string, timeout: number): Promise<StoredReply | undefined> {
    const entry = this.entries.get(key);
    if (!entry || entry.reply) return Promise.resolve(entry?.reply);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          entry.waiters?.splice(entry.waiters.indexOf(wake), 1);
          resolve(undefined);
        },
        Math.max(0, Math.min(timeout, entry.expires - Date.now())),
      );
      const wake = (reply: StoredReply | undefined) => {
        clearTimeout(timer);
        resolve(reply);
      };
      (entry.waiters ??= []).push(wake);
    });
  }

  /** Drops the entries whose window is over, oldest first. */
  private expire(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expires > now) return;
      this.entries.delete(key);
      for (const wake of entry.waiters ?? []) wake(undefined);
    }
  }
}
