import { Injectable } from '@nestjs/common';
import type {
  SessionIndex,
  WebSocketContext,
} from '../context/websocket-context';

/** An upgrade still on its way through the HTTP pipeline, which a timeout or a shutdown must answer. */
export interface PendingHandshake {
  /** When its handshake timeout runs out (ms since the epoch). */
  readonly deadline: number;
  /** Its handshake timeout ran out. */
  expire(): void;
  /** Answers with `status` (or drops the socket when an answer cannot be written) and lets go. */
  abandon(status: number, message: string): void;
}

/**
 * The sessions of this application instance and the upgrades on their way to becoming one:
 * what `WebSocketSessions` shows, the index by id, the handshake timeouts and the shutdown.
 */
@Injectable()
export class SessionRegistry implements SessionIndex {
  private readonly sessions = new Map<WebSocketContext, Promise<void>>();
  private readonly byId = new Map<string, WebSocketContext>();
  private readonly handshakes = new Set<PendingHandshake>();
  /** Expires the handshakes past their deadline: one timer for all, rather than one each. */
  private sweeper?: NodeJS.Timeout;
  private draining = false;

  /** Whether the application is shutting down and takes no new sessions. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** Sessions not yet released: open ones, and closing ones whose handler has not settled. */
  get size(): number {
    return this.sessions.size;
  }

  contexts(): IterableIterator<WebSocketContext> {
    return this.sessions.keys();
  }

  get(id: string): WebSocketContext | undefined {
    return this.byId.get(id);
  }

  /** A session's id has been made: it can be found by it until it is released. */
  index(context: WebSocketContext, id: string): void {
    if (this.sessions.has(context)) this.byId.set(id, context);
  }

  /**
   * Counts `context` among the sessions until `release`; `ended` settles once its connection has
   * closed and its handler has settled.
   */
  track(context: WebSocketContext, ended: Promise<void>): void {
    this.sessions.set(context, ended);
    if (context.knownId) this.byId.set(context.knownId, context);
  }

  /** Forgets a session whose connection has closed and whose handler has settled. */
  release(context: WebSocketContext): void {
    context.released();
    this.sessions.delete(context);
    if (context.knownId) this.byId.delete(context.knownId);
  }

  /** Watches an upgrade until it is forgotten; `timeout` sets how often deadlines are looked at. */
  admit(handshake: PendingHandshake, timeout: number): void {
    this.handshakes.add(handshake);
    this.sweeper ??= setInterval(
      () => this.expireHandshakes(),
      Math.min(1000, Math.max(10, timeout / 10)),
    ).unref();
  }

  forget(handshake: PendingHandshake): void {
    this.handshakes.delete(handshake);
  }

  private expireHandshakes(): void {
    const now = Date.now();
    for (const handshake of this.handshakes) {
      if (handshake.deadline > now) continue;
      try {
        handshake.expire();
      } catch {
        // expiring is answering a peer: nothing of it may stop the others' from being answered
        this.forget(handshake);
      }
    }
    if (this.handshakes.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Resolves once every session open now has closed and its handler has settled. */
  async settled(): Promise<void> {
    await Promise.all(this.sessions.values());
  }

  /**
   * Takes no new sessions, answers the upgrades still in the pipeline with 503, ends every open
   * session with `code` (their signals abort at once), waits for their handlers up to `timeout`
   * ms, then drops the connections that remain.
   */
  async drain(code: number, reason: string, timeout: number): Promise<void> {
    this.draining = true;
    for (const handshake of this.handshakes) handshake.abandon(503, reason);
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const context of this.sessions.keys()) context.end(code, reason);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>(
      (resolve) => (timer = setTimeout(resolve, timeout)),
    );
    await Promise.race([this.settled(), expired]);
    clearTimeout(timer);
    for (const context of this.sessions.keys()) context.terminate();
    await Promise.all(
      [...this.sessions.keys()].map((context) => context.closed),
    );
  }
}
