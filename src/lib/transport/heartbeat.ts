import type { HeartbeatOptions } from '../interfaces/ws-endpoint-options.interface';

/** What the heartbeat needs of a connection. */
export interface HeartbeatPeer {
  /** When the last ping was sent, or the peer last answered one. */
  heartbeatAt: number;
  /** Whether the answer to the last ping is still due. */
  awaitingPong: boolean;
  /** Sends a ping; the peer sets `awaitingPong` and clears it when the pong arrives. */
  ping(): void;
  /** Drops the connection of a peer that has not answered in time. */
  drop(): void;
}

/**
 * Ping/pong dead-peer detection for all the connections of an endpoint, with one timer rather
 * than one a connection: every `min(interval, timeout) / 2` ms it pings the peers whose last
 * ping is `interval` old and drops those that have not answered a ping within `timeout`. A peer
 * whose reading is paused for backpressure is pinged like any other: a peer that filled the
 * queue and then left or went silent must not hold its connection for ever.
 */
export class HeartbeatMonitor {
  private readonly peers = new Set<HeartbeatPeer>();
  private timer?: NodeJS.Timeout;

  /** How often the peers are checked: often enough to ping and to drop on time. */
  private readonly period: number;

  constructor(private readonly options: HeartbeatOptions) {
    this.period = Math.max(1, Math.min(options.interval, options.timeout) / 2);
  }

  watch(peer: HeartbeatPeer): void {
    peer.heartbeatAt = Date.now();
    this.peers.add(peer);
    this.timer ??= setInterval(() => this.check(), this.period).unref();
  }

  /** Stops watching a peer whose connection has closed. */
  forget(peer: HeartbeatPeer): void {
    this.peers.delete(peer);
  }

  private check(): void {
    const now = Date.now();
    for (const peer of this.peers) {
      if (peer.awaitingPong) {
        if (now - peer.heartbeatAt >= this.options.timeout) peer.drop();
      } else if (now - peer.heartbeatAt >= this.options.interval) {
        peer.heartbeatAt = now;
        peer.ping();
      }
    }
    if (this.peers.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
