import { ACK_BYTES, ACK_DELAY, ACK_EVERY } from './envelope';

/**
 * When a receiver acks, on either side: after `ACK_EVERY` messages or `ACK_BYTES` bytes (half
 * the sender's replay buffer, when that is smaller), or `ACK_DELAY` ms after the first one not
 * acked yet, whichever comes first; cumulative, so one ack covers every message before it.
 */
export class AckSchedule {
  private messages = 0;
  private bytes = 0;
  private timer?: ReturnType<typeof setTimeout>;

  /** Acks after this many bytes: fewer than `ACK_BYTES` when the sender keeps fewer. */
  bytesBound = ACK_BYTES;

  constructor(private readonly sendAck: () => void) {}

  /** Whether messages wait to be acked. */
  get pending(): boolean {
    return this.messages > 0;
  }

  /** A message of `bytes` arrived (0 for one that came again, which is acked again). */
  received(bytes: number): void {
    this.messages++;
    this.bytes += bytes;
    if (this.messages >= ACK_EVERY || this.bytes >= this.bytesBound) {
      return this.flush();
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(this.flush, ACK_DELAY);
      // a pending ack does not keep a Node process alive
      (this.timer as { unref?: () => void }).unref?.();
    }
  }

  /** Acks now. */
  readonly flush = (): void => {
    this.cancel();
    this.sendAck();
  };

  /** Forgets what was not acked (the connection is gone; the next one acks on welcome). */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.messages = this.bytes = 0;
  }
}
