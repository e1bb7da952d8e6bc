/** Where a group's publications stand: the offset of the last one, in its history's epoch. @publicApi */
export interface StreamPosition {
  offset: number;
  /** Changes when the history is lost (the broker restarted empty, or the group was idle past its TTL). */
  epoch: string;
}

/** A broadcast on its way to every instance: one group, several, one user's sessions, or all. @publicApi */
export interface Publication {
  /** The groups it is for; none, with no `user`, means every session. */
  groups?: string[];
  /** The user whose sessions it is for. */
  user?: string;
  /** Ids of sessions it skips. */
  except?: string[];
  payload: string | Buffer;
  binary: boolean;
  /**
   * Its place in its stream (the group's for a single-group publication, else `EVERYONE`'s), when
   * the backplane keeps one.
   */
  position?: StreamPosition;
  /**
   * Set by the backplane on what this instance already handed to its own sessions (it published
   * it while the broker was away): the instance only takes note of its position.
   */
  delivered?: boolean;
}

/** One session in a group's presence. @publicApi */
export interface PresenceEntry {
  /** The session's id. */
  session: string;
  /** What the member is known by: its user's id, or the session's id when it has no user. */
  key: string;
  userId?: string;
  /** What the session published with `join(group, { meta })`. */
  meta: unknown;
}

/** What changed in a group's presence: the members that appeared and those that are gone. @publicApi */
export interface PresenceDiff {
  joins: PresenceEntry[];
  leaves: PresenceEntry[];
}

/**
 * The stream of the publications that are not for exactly one group (`toUser`, `all()`, several
 * groups): a lossy backplane numbers them as a group's, so that what pub/sub drops is found. No
 * session can join it (a group has a name).
 */
export const EVERYONE = '';

/** What a backplane hands to its instance. */
export interface BackplaneReceiver {
  /** A publication for a group this instance subscribed to, or for users or all. */
  publication(publication: Publication): void;
  /** A change of a subscribed group's presence. */
  presence(group: string, diff: PresenceDiff): void;
  /**
   * The broker is back after it was away: changes made meanwhile were not announced (and a broker
   * that restarted empty forgot the entries), so presence is listed again.
   */
  reconnected(): void;
}

/** The publications of a group after a position, all of them. @publicApi */
export interface GroupHistory {
  publications: Publication[];
  /** Where the group stands now. */
  position: StreamPosition;
}

/**
 * What carries broadcasts and presence between the instances of an application: in memory for
 * one instance (the default), or a broker (`RedisBackplane`). Provide one with
 * `WsEndpointsModule.forRoot({ backplane })`, or bind your own to the `WS_BACKPLANE` token.
 * @publicApi
 */
export interface Backplane {
  /** Whether publications can be lost on their way (then the instance checks group positions). */
  readonly lossy: boolean;
  /** Starts handing this instance what it subscribes to; called once, at bootstrap. */
  start(receiver: BackplaneReceiver): void | Promise<void>;
  /**
   * Sends `publication` to every instance, this one included, whose receiver gets it once.
   * Resolves `true` once the broker has it, `false` when it was lost; never rejects.
   */
  publish(publication: Publication): Promise<boolean>;
  /**
   * This instance starts receiving `group`'s publications and presence changes; resolves once
   * it does (at once while the broker is away: the subscription is made when it is back).
   */
  subscribe(group: string): Promise<void>;
  unsubscribe(group: string): void;
  /** The group's publications after `since`: every one, or `undefined` when some are gone. */
  history(
    group: string,
    since: StreamPosition,
  ): Promise<GroupHistory | undefined>;
  /** Where `group` stands. */
  position(group: string): Promise<StreamPosition>;
  /** Adds a session to `group`'s presence until `expiresAt` (ms since the epoch), or refreshes it. */
  presenceJoin(
    group: string,
    entry: PresenceEntry,
    expiresAt: number,
  ): Promise<void>;
  /** Extends these sessions' presence; returns those it no longer had. */
  presenceRefresh(
    group: string,
    sessions: string[],
    expiresAt: number,
  ): Promise<string[]>;
  /** Lets a session's presence end at `expiresAt`, unless it joins again before. */
  presenceLeave(
    group: string,
    session: string,
    expiresAt: number,
  ): Promise<void>;
  /** Removes the entries past their end, and announces the members that are gone. */
  presenceSweep(group: string): Promise<void>;
  /** The group's live entries, every instance's. */
  presenceList(group: string): Promise<PresenceEntry[]>;
  /** How many members (distinct keys) the group has. */
  presenceCount(group: string): Promise<number>;
  close(): Promise<void>;
}
