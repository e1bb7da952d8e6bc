import type WebSocket from 'ws';
import type { HeartbeatOptions } from '../interfaces/ws-endpoint-options.interface';

interface Peer {
  /** When the last ping was sent, or the peer last proved alive. */
  since: number;
  awaitingPong: boolean;
}

/**
 * Ping/pong dead-peer detection for all the connections of an endpoint, with one timer rather
 * than one a connection: every `min(interval, timeout) / 2` ms it pings the peers quiet for
 * `interval` and drops those that have not answered a ping within `timeout`. While reading is
 * paused for backpressure the peer is evidently sending, and its pongs wait unread behind its
 * messages, so it is left alone until reading resumes.
 */
export class HeartbeatMonitor {
  private readonly peers = new Map<WebSocket, Peer>();
  private timer?: NodeJS.Timeout;
  private readonly onPong: (this: WebSocket) => void;

  /** How often the peers are checked: often enough to ping and to drop on time. */
  private readonly period: number;

  constructor(private readonly options: HeartbeatOptions) {
    this.period = Math.max(1, Math.min(options.interval, options.timeout) / 2);
    const peers = this.peers;
    // shared listeners, with the socket as `this`: no closure per connection
    this.onPong = function () {
      const peer = peers.get(this);
      if (!peer) return;
      peer.since = Date.now();
      peer.awaitingPong = false;
    };
  }

  watch(ws: WebSocket): void {
    this.peers.set(ws, { since: Date.now(), awaitingPong: false });
    ws.on('pong', this.onPong);
    this.timer ??= setInterval(() => this.check(), this.period).unref();
  }

  /** Stops watching a peer whose connection has closed. */
  forget(ws: WebSocket): void {
    this.peers.delete(ws);
  }

  private check(): void {
    const now = Date.now();
    for (const [ws, peer] of this.peers) {
      if (ws.isPaused) {
        peer.since = now;
        peer.awaitingPong = false;
      } else if (peer.awaitingPong) {
        if (now - peer.since >= this.options.timeout) ws.terminate();
      } else if (now - peer.since >= this.options.interval) {
        peer.since = now;
        peer.awaitingPong = true;
        ws.ping();
      }
    }
    if (this.peers.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
