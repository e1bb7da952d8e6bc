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

  /** Closes every open session with `code` and resolves once all are closed. */
  async closeAll(code: number, reason: string): Promise<void> {
    await Promise.all(
      [...this.open].map((context) => context.close(code, reason)),
    );
  }

  /** Tracks `context` until its connection closes. */
  track(context: WebSocketContext): void {
    this.open.add(context);
    void context.closed.then(() => this.open.delete(context));
  }
}
