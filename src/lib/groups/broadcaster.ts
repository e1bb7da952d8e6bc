import { Injectable } from '@nestjs/common';
import { encode, WebSocketContext } from '../context/websocket-context';
import { SessionRegistry } from '../session/session-registry';
import { GroupRegistry } from './group-registry';

/**
 * Sends one message to many sessions of this instance: the members of groups (`socket.join`),
 * the sessions of a user, or all. The message is serialized once, whatever the number of members.
 * A member that is slow (more than its `sendHighWaterMark` waits for it, or in reliable mode its
 * replay buffer is full) is not waited for: it is closed with 1013 `Slow consumer`, as a peer that
 * does not read, so a broadcast neither waits for it nor piles messages up for it.
 * @example
 * constructor(private readonly broadcaster: Broadcaster) {}
 * this.broadcaster.to(`room:${room}`).except(socket).send({ from, text });
 * @publicApi
 */
@Injectable()
export class Broadcaster {
  constructor(
    private readonly groups: GroupRegistry,
    private readonly sessions: SessionRegistry,
  ) {}

  /** The members of `groups` (each session once, in whichever of them). */
  to(...groups: string[]): Broadcast {
    return new Broadcast(() => {
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
    const id = String(userId);
    return new Broadcast(() =>
      Array.from(this.sessions.contexts()).filter(
        (context) => context.userId === id,
      ),
    );
  }

  /** Every session of this instance. */
  all(): Broadcast {
    return new Broadcast(() => this.sessions.contexts());
  }
}

/** A broadcast's audience, to narrow with `except`, count or send to. @publicApi */
export class Broadcast {
  constructor(
    private readonly audience: () => Iterable<WebSocketContext>,
    private readonly excluded: ReadonlySet<
      WebSocketContext | string
    > = new Set(),
  ) {}

  /** The same audience without these sessions (contexts or ids). */
  except(...sessions: Array<WebSocketContext | string>): Broadcast {
    return new Broadcast(
      this.audience,
      new Set([...this.excluded, ...sessions]),
    );
  }

  /** How many sessions a `send()` now would reach. */
  get count(): number {
    let count = 0;
    for (const _ of this.members()) count++;
    return count;
  }

  /**
   * Sends `data` (as `socket.send` encodes it, once) to each session of the audience; returns
   * how many it was handed to. A slow member is closed with 1013 instead; a session that is
   * closing is left out.
   * @throws TypeError for a value with no JSON form (what its `toJSON` throws), before anything is sent
   */
  send(data: unknown): number {
    const { payload, binary } = encode(data);
    let sent = 0;
    for (const member of this.members()) {
      if (member.deliver(payload, binary)) sent++;
    }
    return sent;
  }

  private *members(): Generator<WebSocketContext> {
    const { excluded } = this;
    for (const member of this.audience()) {
      const { state } = member;
      if (state !== 'open' && state !== 'reconnecting') continue;
      if (excluded.size && (excluded.has(member) || excluded.has(member.id))) {
        continue;
      }
      yield member;
    }
  }
}
