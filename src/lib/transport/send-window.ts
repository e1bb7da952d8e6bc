import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import type { WebSocketDisconnect } from '../errors/ws-disconnect.exception';

const NOTHING = Buffer.alloc(0);

/**
 * Outbound flow control of one connection. `ws.bufferedAmount` counts what waits to be sent:
 * frames queued for compression as well as bytes in the socket's buffer. A send that finds more
 * than the mark waiting waits, in order behind earlier ones, all on one promise, until a wake-up
 * finds the buffer at or below the mark; one that waits longer than `timeout` ends the
 * connection as a slow consumer. The socket's `'drain'` would not do: it needs a write that
 * crossed the socket's own mark of 16 KiB, and misses frames still being compressed.
 *
 * The wake-up: without compression, an empty write to the socket, whose callback runs once all
 * that was written before it has gone. With permessage-deflate, frames wait in `ws` before they
 * reach the socket, so every frame is sent with `sendCallback`, which `ws` calls once the frame
 * has reached the socket. (A callback on every frame would cost each message: Node joins the
 * writes of a frame and its header without a closure only when none of them has a callback.)
 */
export class SendWindow {
  /** The callback to give `ws.send()` for each frame, when frames can wait in `ws`. */
  readonly sendCallback?: () => void;
  private blocked?: Promise<void>;
  private open?: () => void;
  private fail?: (error: WebSocketDisconnect) => void;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    private readonly highWaterMark: number,
    private readonly timeout: number,
    /** Ends the connection of a peer that reads too slowly; returns why sends fail. */
    private readonly onTimeout: () => WebSocketDisconnect,
  ) {
    if (ws.extensions) this.sendCallback = this.wake;
  }

  /** Whether a send must wait: bytes above the mark wait for the peer, or earlier sends wait. */
  get mustWait(): boolean {
    return (
      this.blocked !== undefined || this.ws.bufferedAmount > this.highWaterMark
    );
  }

  /** Resolves when the buffered bytes are at or below the mark; the first waiter arms the timeout. */
  whenOpen(): Promise<void> {
    if (this.blocked) return this.blocked;
    this.blocked = new Promise<void>((resolve, reject) => {
      this.open = resolve;
      this.fail = reject;
      this.timer = setTimeout(() => this.close(this.onTimeout()), this.timeout);
    });
    if (!this.sendCallback) this.socket.write(NOTHING, this.wake);
    return this.blocked;
  }

  /** The connection ends: waiting sends fail with `error`. */
  close(error: WebSocketDisconnect): void {
    const fail = this.fail;
    this.settle();
    fail?.(error);
  }

  /** What was written before has reached the socket, or left it: waiting sends may go. */
  private readonly wake = (): void => {
    const open = this.open;
    // a socket that is gone fails the waiting sends when the connection reports its close
    if (!open || !this.socket.writable) return;
    if (this.ws.bufferedAmount <= this.highWaterMark) {
      this.settle();
      open();
    } else if (!this.sendCallback) {
      // written after the last wake-up: a ping, a pong
      this.socket.write(NOTHING, this.wake);
    }
  };

  private settle(): void {
    clearTimeout(this.timer);
    this.blocked = this.open = this.fail = this.timer = undefined;
  }
}
