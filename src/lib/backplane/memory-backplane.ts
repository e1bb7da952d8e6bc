import { randomBytes } from 'node:crypto';
import type {
  Backplane,
  BackplaneReceiver,
  GroupHistory,
  PresenceEntry,
  Publication,
  StreamPosition,
} from './backplane';

/** Options of `MemoryBackplane`. @publicApi */
export interface MemoryBackplaneOptions {
  /** Publications kept per group, for the clients that recover a group after their session ended. @default 100 */
  historySize?: number;
  /** ms a publication is kept. @default 120000 */
  historyTtl?: number;
}

interface GroupStream {
  epoch: string;
  offset: number;
  /** The last `historySize` publications, oldest first, with when each was made. */
  kept: Array<{ publication: Publication; at: number }>;
}

interface GroupPresence {
  entries: Map<string, { entry: PresenceEntry; expiresAt: number }>;
  /** How many entries each key has. */
  keys: Map<string, number>;
}

/**
 * The backplane of a single instance, and the default: publications go straight to this
 * instance's sessions, presence is this instance's, and each group keeps a short history so
 * that a client whose session ended can still recover what it missed.
 * @publicApi
 */
export class MemoryBackplane implements Backplane {
  readonly lossy = false;
  private receiver?: BackplaneReceiver;
  private readonly subscribed = new Set<string>();
  private readonly streams = new Map<string, GroupStream>();
  private readonly presence = new Map<string, GroupPresence>();
  private readonly historySize: number;
  private readonly historyTtl: number;
  private readonly epochPrefix = randomBytes(6).toString('base64url');
  private epochs = 0;

  constructor({
    historySize = 100,
    historyTtl = 120_000,
  }: MemoryBackplaneOptions = {}) {
    this.historySize = historySize;
    this.historyTtl = historyTtl;
  }

  start(receiver: BackplaneReceiver): void {
    this.receiver = receiver;
  }

  publish(publication: Publication): Promise<boolean> {
    const { groups } = publication;
    if (groups?.length === 1) this.append(groups[0], publication);
    this.receiver?.publication(publication);
    return TRUE;
  }

  subscribe(group: string): Promise<void> {
    this.subscribed.add(group);
    return DONE;
  }

  unsubscribe(group: string): void {
    this.subscribed.delete(group);
  }

  history(
    group: string,
    since: StreamPosition,
  ): Promise<GroupHistory | undefined> {
    const stream = this.stream(group);
    const position = { offset: stream.offset, epoch: stream.epoch };
    if (since.epoch !== stream.epoch || since.offset > stream.offset) {
      return Promise.resolve(undefined);
    }
    const missed = stream.offset - since.offset;
    if (missed > stream.kept.length) return Promise.resolve(undefined);
    const publications = stream.kept
      .slice(stream.kept.length - missed)
      .map(({ publication }) => publication);
    return Promise.resolve({ publications, position });
  }

  position(group: string): Promise<StreamPosition> {
    const { offset, epoch } = this.stream(group);
    return Promise.resolve({ offset, epoch });
  }

  presenceJoin(
    group: string,
    entry: PresenceEntry,
    expiresAt: number,
  ): Promise<void> {
    let presence = this.presence.get(group);
    if (!presence) {
      this.presence.set(
        group,
        (presence = { entries: new Map(), keys: new Map() }),
      );
    }
    const known = presence.entries.has(entry.session);
    presence.entries.set(entry.session, { entry, expiresAt });
    if (!known) {
      const count = (presence.keys.get(entry.key) ?? 0) + 1;
      presence.keys.set(entry.key, count);
      if (count === 1) this.announce(group, [entry], []);
    }
    return DONE;
  }

  presenceRefresh(
    group: string,
    sessions: string[],
    expiresAt: number,
  ): Promise<string[]> {
    const entries = this.presence.get(group)?.entries;
    const missing: string[] = [];
    for (const session of sessions) {
      const kept = entries?.get(session);
      if (kept) kept.expiresAt = expiresAt;
      else missing.push(session);
    }
    return Promise.resolve(missing);
  }

  presenceLeave(
    group: string,
    session: string,
    expiresAt: number,
  ): Promise<void> {
    const kept = this.presence.get(group)?.entries.get(session);
    if (kept) kept.expiresAt = expiresAt;
    return DONE;
  }

  presenceSweep(group: string): Promise<void> {
    const presence = this.presence.get(group);
    if (!presence) return DONE;
    const now = Date.now();
    const leaves: PresenceEntry[] = [];
    for (const [session, { entry, expiresAt }] of presence.entries) {
      if (expiresAt > now) continue;
      presence.entries.delete(session);
      const count = (presence.keys.get(entry.key) ?? 1) - 1;
      if (count > 0) presence.keys.set(entry.key, count);
      else {
        presence.keys.delete(entry.key);
        leaves.push(entry);
      }
    }
    if (!presence.entries.size) this.presence.delete(group);
    if (leaves.length) this.announce(group, [], leaves);
    return DONE;
  }

  presenceList(group: string): Promise<PresenceEntry[]> {
    const now = Date.now();
    const entries = this.presence.get(group)?.entries.values() ?? [];
    return Promise.resolve(
      Array.from(entries)
        .filter(({ expiresAt }) => expiresAt > now)
        .map(({ entry }) => entry),
    );
  }

  /** Sweeps first: a member whose time is up is counted no more than listed. */
  async presenceCount(group: string): Promise<number> {
    await this.presenceSweep(group);
    return this.presence.get(group)?.keys.size ?? 0;
  }

  close(): Promise<void> {
    this.receiver = undefined;
    return DONE;
  }

  private announce(
    group: string,
    joins: PresenceEntry[],
    leaves: PresenceEntry[],
  ): void {
    if (this.subscribed.has(group))
      this.receiver?.presence(group, { joins, leaves });
  }

  /** Gives `publication` the group's next offset and keeps it. */
  private append(group: string, publication: Publication): void {
    const stream = this.stream(group);
    const now = Date.now();
    stream.offset++;
    publication.position = { offset: stream.offset, epoch: stream.epoch };
    stream.kept.push({ publication, at: now });
    if (stream.kept.length > this.historySize) stream.kept.shift();
  }

  /**
   * The group's stream, without what is past its TTL; a group with nothing kept and no
   * subscriber starts over in a new epoch, so that the streams of idle groups do not pile up.
   */
  private stream(group: string): GroupStream {
    let stream = this.streams.get(group);
    if (stream) {
      const oldest = Date.now() - this.historyTtl;
      let expired = 0;
      while (expired < stream.kept.length && stream.kept[expired].at < oldest)
        expired++;
      if (expired) stream.kept.splice(0, expired);
    }
    if (!stream) {
      stream = {
        epoch: `${this.epochPrefix}.${++this.epochs}`,
        offset: 0,
        kept: [],
      };
      this.streams.set(group, stream);
      this.forgetIdle(group);
    }
    return stream;
  }

  /** Drops the streams of groups with no subscriber and nothing kept within the TTL. */
  private forgetIdle(current: string): void {
    if (this.streams.size % 1024 !== 0) return;
    const oldest = Date.now() - this.historyTtl;
    for (const [group, { kept }] of this.streams) {
      const last = kept.at(-1);
      if (group === current || this.subscribed.has(group)) continue;
      if (!last || last.at < oldest) {
        this.streams.delete(group);
      }
    }
  }
}

const TRUE = Promise.resolve(true);
const DONE = Promise.resolve();
