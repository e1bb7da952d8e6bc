import { Observable } from 'rxjs';
import type { PresenceDiff, PresenceEntry } from '../backplane/backplane';

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

/** ms before a list the broker did not answer is asked again. */
const LIST_RETRY = 1000;

/** The group's members, one per key (its first entry's meta). */
export function membersOf(entries: PresenceEntry[]): PresenceMember[] {
  const members = new Map<string, PresenceMember>();
  for (const entry of entries) {
    if (!members.has(entry.key)) members.set(entry.key, memberOf(entry));
  }
  return Array.from(members.values());
}

/**
 * The group's members (`state`), then each change (`diff`): the changes that come before the
 * list are held and follow it. It never errors: while the broker is away, the list is asked for
 * again every second.
 */
export function presenceEvents(
  group: string,
  list: () => Promise<PresenceEntry[]>,
  watch: (listener: (diff: PresenceDiff | undefined) => void) => {
    subscribed: Promise<void>;
    stop: () => void;
  },
): Observable<PresenceEvent> {
  return new Observable<PresenceEvent>((subscriber) => {
    let held: PresenceDiff[] | undefined = [];
    const { subscribed, stop } = watch((diff) => {
      if (!diff) {
        // the broker is back: what changed meanwhile is told by a new state
        if (!held) void state();
        held = [];
      } else if (held) held.push(diff);
      else subscriber.next(diffEvent(group, diff));
    });
    let retry: NodeJS.Timeout | undefined;
    const state = () =>
      list().then(
        (entries) => {
          if (subscriber.closed) return;
          subscriber.next({
            type: 'state',
            group,
            members: membersOf(entries),
          });
          for (const diff of held ?? [])
            subscriber.next(diffEvent(group, diff));
          held = undefined;
        },
        () => {
          if (!subscriber.closed) retry = setTimeout(state, LIST_RETRY).unref();
        },
      );
    // listed once changes come: none falls between the list and them
    void subscribed.then(state);
    return () => {
      clearTimeout(retry);
      stop();
    };
  });
}

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
