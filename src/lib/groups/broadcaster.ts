import { Injectable } from '@nestjs/common';
import type { Publication } from '../backplane/backplane';
import { encode, WebSocketContext } from '../context/websocket-context';
import { GroupHub } from './group-hub';
import { GroupRegistry } from './group-registry';
import { SessionRegistry } from '../session/session-registry';
import { INVALID_GROUP } from '../messages';
import { isGroupName } from '../protocol/envelope';

/**
 * Sends one message to many sessions, on every instance of the app: the members of groups
 * (`socket.join`), the sessions of a user, or all. The message is serialized once, whatever the
 * number of members. A member that is slow (more than its `sendHighWaterMark` waits for it, or in
 * reliable mode its replay buffer is full) is not waited for: it is closed with 1013
 * `Slow consumer`, as a peer that does not read, so a broadcast neither waits for it nor piles
 * messages up for it.
 * @example
 * constructor(private readonly broadcaster: Broadcaster) {}
 * void this.broadcaster.to(`room:${room}`).except(socket).send({ from, text });
 * @publicApi
 */
@Injectable()
export class Broadcaster {
  constructor(
    private readonly hub: GroupHub,
    private readonly groups: GroupRegistry,
    private readonly sessions: SessionRegistry,
  ) {}

  /**
   * The members of `groups` (each session once, in whichever of them); none without a group.
   * @throws TypeError for a name `socket.join()` would refuse
   */
  to(...groups: string[]): Broadcast {
    for (const group of groups) {
      if (!isGroupName(group)) throw new TypeError(INVALID_GROUP(group));
    }
    return new Broadcast(this.hub, { groups }, () => {
      if (groups.length === 1) return this.groups.members(groups[0]);
      const members = new Set<WebSocketContext>();
      for (const group of groups) {
        for (const member of this.groups.members(group)) members.add(member);
      }
      return members;
    });
  }

  /** Every session whose user has this id (the endpoint's `userId` option finds it). */
  toUser(userId: string | number): Broadcast {
    const user = String(userId);
    return new Broadcast(this.hub, { user }, () =>
      Array.from(this.sessions.contexts()).filter(
        (context) => context.userId === user,
      ),
    );
  }

  /** Every session. */
  all(): Broadcast {
    return new Broadcast(this.hub, {}, () => this.sessions.contexts());
  }
}

const NO_ONE = Promise.resolve(true);

/** A broadcast's audience, to narrow with `except`, count or send to. @publicApi */
export class Broadcast {
  constructor(
    private readonly hub: GroupHub,
    private readonly target: Pick<Publication, 'groups' | 'user'>,
    private readonly local: () => Iterable<WebSocketContext>,
    private readonly excluded: ReadonlySet<
      WebSocketContext | string
    > = new Set(),
  ) {}

  /** The same audience without these sessions (contexts or ids). */
  except(...sessions: Array<WebSocketContext | string>): Broadcast {
    return new Broadcast(
      this.hub,
      this.target,
      this.local,
      new Set([...this.excluded, ...sessions]),
    );
  }

  /** How many sessions of this instance a `send()` now would reach (`Presence.count` counts all). */
  get count(): number {
    let count = 0;
    for (const member of this.local()) {
      const { state } = member;
      if (state !== 'open' && state !== 'reconnecting') continue;
      if (
        this.excluded.has(member) ||
        (member.knownId && this.excluded.has(member.knownId))
      ) {
        continue;
      }
      count++;
    }
    return count;
  }

  /**
   * Sends `data` (as `socket.send` encodes it, once) to each session of the audience, on every
   * instance. A slow member is closed with 1013 instead; a session that is closing is left out.
   * Resolves `true` once the backplane has it (in memory: once it was handed to each session
   * here), `false` if it was lost (the broker was away longer than the backplane keeps
   * publications); it never rejects.
   * @throws TypeError for a value with no JSON form (what its `toJSON` throws), before anything is sent
   */
  send(data: unknown): Promise<boolean> {
    const { payload, binary } = encode(data);
    // to() without a group: no one
    if (this.target.groups?.length === 0) return NO_ONE;
    const publication: Publication = { ...this.target, payload, binary };
    if (this.excluded.size) {
      publication.except = Array.from(this.excluded, (session) =>
        typeof session === 'string' ? session : session.id,
      );
    }
    return this.hub.publish(publication);
  }
}
