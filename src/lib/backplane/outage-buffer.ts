import type { Publication } from './backplane';

/** A publication held while the broker is away, with how to settle its `publish()`. */
export interface Held {
  body: Buffer;
  /** Its only group, when it goes into the group's stream. */
  group?: string;
  /** What was published, once it is held (handed to this instance's sessions already). */
  publication?: Publication;
  at: number;
  settle(published: boolean): void;
}

/** How much `RedisBackplane` holds while Redis is away. @publicApi */
export interface OutageLimits {
  /** @default 10000 */
  messages?: number;
  /** Bytes of bodies. @default 16 MiB */
  bytes?: number;
  /** ms a publication is held before it is given up as lost. @default 60000 */
  maxAge?: number;
}

/**
 * The publications made while the broker is away, oldest first, bounded in count, bytes and
 * age: what does not fit, or waits too long, is lost (its `publish()` resolves `false`).
 */
export class OutageBuffer {
  private readonly held: Held[] = [];
  private bytes = 0;
  private readonly maxMessages: number;
  private readonly maxBytes: number;
  private readonly maxAge: number;
  /** Gives up the oldest when it has waited `maxAge`, whether or not anything else happens. */
  private timer?: NodeJS.Timeout;

  constructor({
    messages = 10_000,
    bytes = 16 << 20,
    maxAge = 60_000,
  }: OutageLimits = {}) {
    this.maxMessages = messages;
    this.maxBytes = bytes;
    this.maxAge = maxAge;
  }

  get size(): number {
    return this.held.length;
  }

  /** Holds `item`; `false` (and it is settled as lost) when there is no room. */
  hold(item: Held): boolean {
    this.expire();
    if (
      this.held.length >= this.maxMessages ||
      this.bytes + item.body.length > this.maxBytes
    ) {
      item.settle(false);
      return false;
    }
    this.held.push(item);
    this.bytes += item.body.length;
    this.schedule();
    return true;
  }

  /** The oldest held publication still within its age. */
  first(): Held | undefined {
    this.expire();
    return this.held[0];
  }

  /** The oldest was published. */
  shift(): void {
    const item = this.held.shift();
    if (item) this.bytes -= item.body.length;
  }

  /** Gives everything up as lost. */
  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const item of this.held.splice(0)) item.settle(false);
    this.bytes = 0;
  }

  private schedule(): void {
    if (this.timer || !this.held.length) return;
    const due = this.held[0].at + this.maxAge - Date.now();
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.expire();
        this.schedule();
      },
      Math.max(due, 0) + 1,
    ).unref();
  }

  private expire(): void {
    const oldest = Date.now() - this.maxAge;
    while (this.held.length && this.held[0].at < oldest) {
      const item = this.held.shift()!;
      this.bytes -= item.body.length;
      item.settle(false);
    }
  }
}
