import type { Frame } from '../protocol/envelope';

/** A message the client has sent, or will send, that the server has not acked. */
export interface Outgoing {
  kind: typeof Frame.Message | typeof Frame.Request;
  payload: string | Uint8Array;
  id?: string;
  /** The sequence number it went out with on the current session (reliable mode); 0 until sent. */
  seq: number;
  bytes: number;
}

/**
 * What the client has to deliver: messages not sent yet (offline) and, in reliable mode, sent
 * ones the server has not acked. Bounded in messages and bytes: `push` refuses beyond either.
 */
export class Outbox {
  private items: Outgoing[] = [];
  private size = 0;

  constructor(
    private readonly maxMessages: number,
    private readonly maxBytes: number,
  ) {}

  get length(): number {
    return this.items.length;
  }

  get bytes(): number {
    return this.size;
  }

  /** Whether one more message of `bytes` fits. */
  fits(bytes: number): boolean {
    return (
      this.items.length < this.maxMessages &&
      (this.size + bytes <= this.maxBytes || this.items.length === 0)
    );
  }

  push(item: Outgoing): void {
    this.items.push(item);
    this.size += item.bytes;
  }

  /** The server has everything up to `seq`: those go. */
  acked(seq: number): void {
    let n = 0;
    while (
      n < this.items.length &&
      this.items[n].seq > 0 &&
      this.items[n].seq <= seq
    ) {
      this.size -= this.items[n].bytes;
      n++;
    }
    if (n) this.items = this.items.slice(n);
  }

  /** Removes one item (a request-only message that was sent, or one given up). */
  remove(item: Outgoing): void {
    const index = this.items.indexOf(item);
    if (index < 0) return;
    this.items.splice(index, 1);
    this.size -= item.bytes;
  }

  /** What is to be (re)sent, oldest first. */
  pending(): readonly Outgoing[] {
    return this.items;
  }
}
