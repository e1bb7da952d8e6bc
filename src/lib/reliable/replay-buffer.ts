import type { WebSocketDisconnect } from '../errors/ws-disconnect.exception';

/** A frame sent in reliable mode, kept until the client acks it. */
export interface ReplayEntry {
  seq: number;
  frame: string | Buffer;
  binary: boolean;
  bytes: number;
}

/**
 * What a reliable session has sent and the client has not acked yet, in order, so that it can
 * be sent again on the next connection. Bounded in bytes: past `limit` a sender waits for acks
 * (the frame that crosses the bound is kept, so one message larger than the bound still goes).
 */
export class ReplayBuffer {
  /** The sequence number of the last frame pushed. */
  last = 0;
  private entries: ReplayEntry[] = [];
  private head = 0;
  private bytes = 0;
  private room?: Promise<void>;
  private open?: () => void;
  private fail?: (error: unknown) => void;

  constructor(private readonly limit: number) {}

  /** Whether a sender must wait for acks. */
  get full(): boolean {
    return this.bytes > this.limit;
  }

  /** Whether a sender waits for room. */
  get waiting(): boolean {
    return this.open !== undefined;
  }

  /** Bytes kept. */
  get size(): number {
    return this.bytes;
  }

  push(frame: string | Buffer, binary: boolean): number {
    const bytes =
      typeof frame === 'string' ? Buffer.byteLength(frame) : frame.length;
    this.entries.push({ seq: ++this.last, frame, binary, bytes });
    this.bytes += bytes;
    return this.last;
  }

  /** The client has every frame up to `seq`: they are let go, and waiting senders may go. */
  acked(seq: number): void {
    const { entries } = this;
    while (this.head < entries.length && entries[this.head].seq <= seq) {
      this.bytes -= entries[this.head].bytes;
      this.head++;
    }
    // compact once the acked part is the larger one: O(1) amortized per frame
    if (this.head > 32 && this.head * 2 > entries.length) {
      this.entries = entries.slice(this.head);
      this.head = 0;
    }
    if (!this.full && this.open) {
      const open = this.open;
      this.room = this.open = this.fail = undefined;
      open();
    }
  }

  /** The frames not acked, oldest first. */
  unacked(): ReplayEntry[] {
    return this.entries.slice(this.head);
  }

  /** Resolves once acks brought the buffer within its bound. */
  whenRoom(): Promise<void> {
    return (this.room ??= new Promise<void>((resolve, reject) => {
      this.open = resolve;
      this.fail = reject;
    }));
  }

  /** The session ended: waiting senders fail with `error`, and nothing is kept. */
  close(error: WebSocketDisconnect): void {
    const fail = this.fail;
    this.room = this.open = this.fail = undefined;
    this.entries = [];
    this.head = this.bytes = 0;
    fail?.(error);
  }
}
