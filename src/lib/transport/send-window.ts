import type WebSocket from 'ws';
import type { WebSocketDisconnect } from '../errors/ws-disconnect.exception';

/**
 * Outbound flow control of one connection. `ws.bufferedAmount` counts what waits to be sent:
 * frames queued for compression as well as bytes in the socket's buffer. Every frame is sent
 * with `written` as its callback, which `ws` calls once the frame has reached the socket: that,
 * not the socket's `'drain'` (which needs a write that crossed the socket's own mark, and misses
 * frames still being compressed), is when a waiting send may go. Sends wait in order, all on one
 * promise; one that waits longer than `timeout` ends the connection as a slow consumer.
 */
export class SendWindow {
  private blocked?: Promise<void>;
  private open?: () => void;
  private fail?: (error: WebSocketDisconnect) => void;
  private timer?: NodeJS.Timeout;

  /** ws's send callback, shared by every frame of the connection. */
  readonly written = (): void => {
    if (this.open && this.ws.bufferedAmount <= this.highWaterMark) {
      const open = this.open;
      this.settle();
      open();
    }
  };

  constructor(
    private readonly ws: WebSocket,
    private readonly highWaterMark: number,
    private readonly timeout: number,
    /** Ends the connection of a peer that reads too slowly; returns why sends fail. */
    private readonly onTimeout: () => WebSocketDisconnect,
  ) {}

  /** Whether a send must wait: bytes above the mark wait for the peer, or earlier sends wait. */
  get mustWait(): boolean {
    return (
      this.blocked !== undefined || this.ws.bufferedAmount > this.highWaterMark
    );
  }

  /** Resolves when the buffered bytes are at or below the mark; the first waiter arms the timeout. */
  whenOpen(): Promise<void> {
    return (this.blocked ??= new Promise<void>((resolve, reject) => {
      this.open = resolve;
      this.fail = reject;
      this.timer = setTimeout(() => this.close(this.onTimeout()), this.timeout);
    }));
  }

  /** The connection ends: waiting sends fail with `error`. */
  close(error: WebSocketDisconnect): void {
    const fail = this.fail;
    this.settle();
    fail?.(error);
  }

  private settle(): void {
    clearTimeout(this.timer);
    this.blocked = this.open = this.fail = this.timer = undefined;
  }
}
