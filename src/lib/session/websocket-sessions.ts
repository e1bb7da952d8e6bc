import { Injectable } from '@nestjs/common';
import type { WebSocketContext } from '../context/websocket-context';

/**
 * The open WebSocket sessions of this application instance.
 * @example constructor(private readonly sessions: WebSocketSessions) {} … this.sessions.size
 * @publicApi
 */
@Injectable()
export class WebSocketSessions implements Iterable<WebSocketContext> {
  private readonly open = new Map<WebSocketContext, Promise<void>>();
  private draining = false;

  /** How many sessions there are now: open ones, and closing ones whose handler has not settled. */
  get size(): number {
    return this.open.size;
  }

  /** Whether the application is shutting down and takes no new sessions. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** The sessions whose connection is open, for sending to: closing ones are left out. */
  *[Symbol.iterator](): Iterator<WebSocketContext> {
    for (const context of this.open.keys()) {
      if (context.state === 'open') yield context;
    }
  }

  /**
   * Counts `context` among the sessions until `release`; `ended` settles once its connection has
   * closed and its handler has settled.
   */
  track(context: WebSocketContext, ended: Promise<void>): void {
    this.open.set(context, ended);
  }

  /** Forgets a session whose connection has closed and whose handler has settled. */
  release(context: WebSocketContext): void {
    this.open.delete(context);
  }

  /** Resolves once every session open now has closed and its handler has settled. */
  async settled(): Promise<void> {
    await Promise.all(this.open.values());
  }

  /**
   * Takes no new sessions, ends every open one with `code` (their signals abort at once), waits
   * for their handlers up to `timeout` ms, then drops the connections that remain.
   */
  async drain(code: number, reason: string, timeout: number): Promise<void> {
    this.draining = true;
    for (const context of this.open.keys()) context.end(code, reason);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>(
      (resolve) => (timer = setTimeout(resolve, timeout)),
    );
    await Promise.race([Promise.all(this.open.values()), expired]);
    clearTimeout(timer);
    for (const context of this.open.keys()) context.terminate();
    await Promise.all([...this.open.keys()].map((context) => context.closed));
  }
}
