import { Inject, Injectable } from '@nestjs/common';
import type { Backplane, PresenceEntry } from '../backplane/backplane';
import { WS_BACKPLANE } from '../constants';
import type { WebSocketContext } from '../context/websocket-context';
import { describeError } from '../errors/describe-error';
import { SafeLogger } from '../errors/safe-logger';
import type { WsEndpointsModuleOptions } from '../interfaces/ws-endpoint-options.interface';
import { PRESENCE_FAILED } from '../messages';
import { PRESENCE_DEFAULTS } from '../ws-endpoints.defaults';
import { WS_ENDPOINTS_OPTIONS } from '../ws-endpoints.module-definition';

const logger = new SafeLogger('Presence');

/**
 * This instance's part of presence: it adds the sessions that join with `meta`, lets them go
 * after the grace period when they leave, says every third of the TTL that its members are
 * alive (an instance that dies stops saying it), and sweeps the groups it knows of, which
 * announces the members whose time is up wherever they were.
 */
@Injectable()
export class PresenceTracker {
  /** The entries of this instance's sessions, by group, then by session. */
  private readonly local = new Map<string, Map<string, PresenceEntry>>();
  /** Groups whose presence is watched here, with how many watch each. */
  private readonly watched = new Map<string, number>();
  private readonly sweeps = new Map<string, NodeJS.Timeout>();
  private timer?: NodeJS.Timeout;
  private disposed = false;
  private readonly grace: number;
  private readonly ttl: number;

  constructor(
    @Inject(WS_BACKPLANE) private readonly backplane: Backplane,
    @Inject(WS_ENDPOINTS_OPTIONS) options: WsEndpointsModuleOptions,
  ) {
    this.grace = options.presence?.grace ?? PRESENCE_DEFAULTS.grace;
    this.ttl = options.presence?.ttl ?? PRESENCE_DEFAULTS.ttl;
  }

  track(context: WebSocketContext, group: string, meta: unknown): void {
    const { userId } = context;
    const entry: PresenceEntry = {
      session: context.id,
      key: userId ?? context.id,
      userId,
      meta,
    };
    let entries = this.local.get(group);
    if (!entries) this.local.set(group, (entries = new Map()));
    entries.set(entry.session, entry);
    this.join(group, entry);
    this.keepAlive();
  }

  untrack(context: WebSocketContext, group: string): void {
    const entries = this.local.get(group);
    const session = context.knownId;
    if (!session || !entries?.delete(session)) return;
    if (!entries.size) this.local.delete(group);
    this.backplane.presenceLeave(group, session, Date.now() + this.grace).then(
      () => this.sweepAfter(group, this.grace),
      (error: unknown) =>
        logger.warn(PRESENCE_FAILED(group, describeError(error))),
    );
    this.keepAlive();
  }

  /** `group`'s presence is watched here (`1`), or no longer by one watcher (`-1`). */
  watching(group: string, change: 1 | -1): void {
    const count = (this.watched.get(group) ?? 0) + change;
    if (count > 0) this.watched.set(group, count);
    else this.watched.delete(group);
    this.keepAlive();
  }

  dispose(): void {
    this.disposed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    for (const sweep of this.sweeps.values()) clearTimeout(sweep);
    this.sweeps.clear();
  }

  private join(group: string, entry: PresenceEntry): void {
    this.backplane
      .presenceJoin(group, entry, Date.now() + this.ttl)
      .catch((error: unknown) =>
        logger.warn(PRESENCE_FAILED(group, describeError(error))),
      );
  }

  /** Refreshes and sweeps while there is something to refresh or watch. */
  private keepAlive(): void {
    const busy =
      !this.disposed && (this.local.size > 0 || this.watched.size > 0);
    if (busy && !this.timer) {
      this.timer = setInterval(
        () => this.refresh(),
        Math.floor(this.ttl / 3),
      ).unref();
    } else if (!busy && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Says this instance's members are alive (adding those the broker lost), and sweeps. */
  refresh(): void {
    const expiresAt = Date.now() + this.ttl;
    for (const [group, entries] of this.local) {
      this.backplane
        .presenceRefresh(group, Array.from(entries.keys()), expiresAt)
        .then(
          // swept while this instance could not say it was alive (the broker was away): added again
          (missing) => {
            for (const session of missing) {
              const entry = this.local.get(group)?.get(session);
              if (entry) this.join(group, entry);
            }
          },
          (error: unknown) =>
            logger.warn(PRESENCE_FAILED(group, describeError(error))),
        );
    }
    for (const group of new Set([
      ...this.local.keys(),
      ...this.watched.keys(),
    ])) {
      this.sweep(group);
    }
  }

  /** Sweeps `group` once `delay` has passed (one sweep for the leaves of that moment). */
  private sweepAfter(group: string, delay: number): void {
    if (this.disposed || this.sweeps.has(group)) return;
    const timer = setTimeout(() => {
      this.sweeps.delete(group);
      this.sweep(group);
    }, delay + 1);
    this.sweeps.set(group, timer.unref());
  }

  private sweep(group: string): void {
    this.backplane
      .presenceSweep(group)
      .catch((error: unknown) =>
        logger.warn(PRESENCE_FAILED(group, describeError(error))),
      );
  }
}
