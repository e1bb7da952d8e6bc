import { Injectable } from '@nestjs/common';
import type { WebSocketContext } from '../context/websocket-context';
import { SessionRegistry } from './session-registry';

/**
 * The WebSocket sessions of this application instance, to look at: how many, which are open,
 * one by its id, and when they have all ended.
 * @example constructor(private readonly sessions: WebSocketSessions) {} … this.sessions.get(id)?.send(x)
 * @publicApi
 */
@Injectable()
export class WebSocketSessions implements Iterable<WebSocketContext> {
  constructor(private readonly registry: SessionRegistry) {}

  /** How many sessions there are: open ones, and closing ones whose handler has not settled. */
  get size(): number {
    return this.registry.size;
  }

  /** The sessions whose connection is open, for sending to: closing ones are left out. */
  *[Symbol.iterator](): Iterator<WebSocketContext> {
    for (const context of this.registry.contexts()) {
      if (context.state === 'open') yield context;
    }
  }

  /** The session with this `id` (`socket.id`), until it has ended. */
  get(id: string): WebSocketContext | undefined {
    return this.registry.get(id);
  }

  /** Resolves once every session open now has closed and its handler has settled. */
  settled(): Promise<void> {
    return this.registry.settled();
  }
}
