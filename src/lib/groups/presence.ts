import { Inject, Injectable } from '@nestjs/common';
import { Observable } from 'rxjs';
import type {
  Backplane,
  PresenceDiff,
  PresenceEntry,
} from '../backplane/backplane';
import { WS_BACKPLANE } from '../constants';
import { GroupHub } from './group-hub';

/** A member of a group's presence: a user (or a session without one), with its metadata. @publicApi */
export interface PresenceMember {
  /** The user's id, or the session's id when the session has no user. */
  key: string;
  userId?: string;
  /** What its session published with `socket.join(group, { meta })` (its first session's). */
  meta: unknown;
}

/** What `Presence.watch()` emits: the members first, then each change. @publicApi */
export type PresenceEvent =
  | { type: 'state'; group: string; members: PresenceMember[] }
  | {
      type: 'diff';
      group: string;
      joins: PresenceMember[];
      leaves: PresenceMember[];
    };

/**
 * Who is in a group, on every instance: the sessions that joined it with `meta`
 * (`socket.join(group, { meta })`), one member per user. A member whose sessions all left stays
 * listed for the grace period (`presence.grace`), so a reconnection or a deploy makes no
 * leave-and-join; the members of an instance that died leave within `presence.ttl` and a third.
 * @example
 * constructor(private readonly presence: Presence) {}
 * const members = await this.presence.list(`room:${room}`);
 * @publicApi
 */
@Injectable()
export class Presence {
  constructor(
    @Inject(WS_BACKPLANE) private readonly backplane: Backplane,
    private readonly hub: GroupHub,
  ) {}

  /** The group's members, one per user. */
  async list(group: string): Promise<PresenceMember[]> {
    const members = new Map<string, PresenceMember>();
    for (const entry of await this.backplane.presenceList(group)) {
      if (!members.has(entry.key)) members.set(entry.key, memberOf(entry));
    }
    return Array.from(members.values());
  }

  /** How many members the group has: cheap for a big group, where a list is not. */
  count(group: string): Promise<number> {
    return this.backplane.presenceCount(group);
  }

  /**
   * The group's members (`state`), then each change (`diff`), for as long as it is subscribed:
   * what a member list in a page needs. It never errors: while the broker is away, the list is
   * asked for again every second.
   * @example
   * const watching = this.presence.watch(room).subscribe((event) => void socket.send(event).catch(() => {}));
   * socket.closed.finally(() => watching.unsubscribe());
   */
  watch(group: string): Observable<PresenceEvent> {
    return new Observable<PresenceEvent>((subscriber) => {
      // changes that come before the list are held, then follow it
      let held: PresenceDiff[] | undefined = [];
      const stop = this.hub.watch(group, (diff) => {
        if (held) held.push(diff);
        else subscriber.next(diffEvent(group, diff));
      });
      let retry: NodeJS.Timeout | undefined;
      // the broker may be away: the list is asked again until it answers
      const state = () =>
        this.list(group).then(
          (members) => {
            if (subscriber.closed) return;
            subscriber.next({ type: 'state', group, members });
            for (const diff of held ?? [])
              subscriber.next(diffEvent(group, diff));
            held = undefined;
          },
          () => {
            if (!subscriber.closed)
              retry = setTimeout(state, LIST_RETRY).unref();
          },
        );
      void state();
      return () => {
        clearTimeout(retry);
        stop();
      };
    });
  }
}

/** ms before a list the broker did not answer is asked again. */
const LIST_RETRY = 1000;

function memberOf({ key, userId, meta }: PresenceEntry): PresenceMember {
  return userId === undefined ? { key, meta } : { key, userId, meta };
}

function diffEvent(
  group: string,
  { joins, leaves }: PresenceDiff,
): PresenceEvent {
  return {
    type: 'diff',
    group,
    joins: joins.map(memberOf),
    leaves: leaves.map(memberOf),
  };
}
