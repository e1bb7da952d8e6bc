import { Injectable } from '@nestjs/common';
import type { WebSocketContext } from '../context/websocket-context';

/**
 * The open WebSocket sessions of this application instance.
 * @example constructor(private readonly sessions: WebSocketSessions) {} … this.sessions.size
 * @publicApi
 */
@Injectable()
export class WebSocketSessions implements Iterable<WebSocketContext> {
  private readonly open = new Set<WebSocketContext>();

  /** How many sessions are open now. */
  get size(): number {
    return this.open.size;
  }

  [Symbol.iterator](): Iterator<WebSocketContext> {
    return this.open.values();
  }

  /** Tracks `context` until its connection closes. */
  track(context: WebSocketContext): void {
    this.open.add(context);
    void context.closed.then(() => this.open.delete(context));
  }
}
