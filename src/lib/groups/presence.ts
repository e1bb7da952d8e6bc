import { Inject, Injectable } from '@nestjs/common';
import type { Observable } from 'rxjs';
import type { Backplane } from '../backplane/backplane';
import { WS_BACKPLANE } from '../constants';
import { GroupHub } from './group-hub';
import {
  membersOf,
  type PresenceEvent,
  type PresenceMember,
  presenceEvents,
} from './presence-events';

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
    return membersOf(await this.backplane.presenceList(group));
  }

  /** How many members the group has: cheap for a big group, where a list is not. */
  count(group: string): Promise<number> {
    return this.backplane.presenceCount(group);
  }

  /**
   * The group's members (`state`), then each change (`diff`), for as long as it is subscribed.
   * It never errors: while the broker is away, the list is asked for again every second, and
   * when it is back after it was away, a new `state` replaces the list. A
   * member that should see them can rather join with `{ watch: true }`.
   * @example
   * this.presence.watch(room).subscribe((event) => chart.update(event));
   */
  watch(group: string): Observable<PresenceEvent> {
    return presenceEvents(
      group,
      () => this.backplane.presenceList(group),
      (listener) => this.hub.watch(group, listener),
    );
  }
}
