import type WebSocket from 'ws';
import type { HeartbeatOptions } from '../interfaces/ws-endpoint-options.interface';

/**
 * Pings the peer every `interval` and drops the connection when no pong arrives within `timeout`.
 * While reading is paused for backpressure the peer is evidently sending, and its pongs wait
 * unread behind its messages, so the check is skipped until reading resumes.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout;
  private awaitingPong = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly options: HeartbeatOptions,
    private readonly isReadingPaused: () => boolean,
  ) {
    this.timer = setTimeout(() => this.tick(), options.interval).unref();
    ws.on('pong', () => {
      this.awaitingPong = false;
      this.schedule(options.interval);
    });
    ws.once('close', () => clearTimeout(this.timer));
  }

  private tick(): void {
    if (this.isReadingPaused()) {
      this.awaitingPong = false;
      return this.schedule(this.options.interval);
    }
    if (this.awaitingPong) {
      this.ws.terminate();
      return;
    }
    this.awaitingPong = true;
    this.ws.ping();
    this.schedule(this.options.timeout);
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), ms).unref();
  }
}
