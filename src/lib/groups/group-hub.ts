import {
  Inject,
  Injectable,
  OnApplicationShutdown,
  OnModuleInit,
  Optional,
} from '@nestjs/common';
import {
  type Backplane,
  type BackplaneReceiver,
  EVERYONE,
  type PresenceDiff,
  type Publication,
  type StreamPosition,
} from '../backplane/backplane';
import { WS_BACKPLANE } from '../constants';
import type { WebSocketContext } from '../context/websocket-context';
import { describeError } from '../errors/describe-error';
import { SafeLogger } from '../errors/safe-logger';
import { GROUP_MESSAGES_LOST } from '../messages';
import { WsMetrics } from '../metrics/ws-metrics';
import { Frame } from '../protocol/envelope';
import { SessionRegistry } from '../session/session-registry';
import { GroupCursors } from './group-cursors';
import { GroupRegistry } from './group-registry';
import { PresenceTracker } from './presence-tracker';
import { presenceEvents } from './presence-events';
import type { Subscription } from 'rxjs';

/** What `socket.join()` resolves with. @publicApi */
export interface JoinResult {
  /**
   * `false` when the client asked to recover the group's messages since its last one (it had
   * lost its session, reliable mode) and some were gone: it got none of them, and its client
   * emitted `'lost'`. `true` otherwise.
   */
  recovered: boolean;
  /** How many messages the client recovered. */
  missed: number;
}

/** Hears each change of a group's presence, or `undefined`: list it again (the broker is back). */
type PresenceListener = (diff: PresenceDiff | undefined) => void;

function ignore(): void {}
const SUBSCRIBED = Promise.resolve();
/** The place of a group message that has none in the group's history (`-`: the client keeps its own). */
const UNPLACED: StreamPosition = Object.freeze({ offset: 0, epoch: '-' });
const RECOVERED: JoinResult = Object.freeze({ recovered: true, missed: 0 });
const logger = new SafeLogger('GroupHub');

/**
 * The groups of this instance's sessions, joined to the backplane: it subscribes to a group while
 * a session here is in it (or watches its presence), hands each publication to the sessions it
 * is for, and brings a reliable client that lost its session up to date when it joins again.
 */
@Injectable()
export class GroupHub
  implements BackplaneReceiver, OnModuleInit, OnApplicationShutdown
{
  /** Members and presence watchers of each group this instance subscribes to. */
  private readonly interest = new Map<string, number>();
  /** The subscription of each group this instance is interested in, settled once it is made. */
  private readonly subscriptions = new Map<string, Promise<void>>();
  private readonly watchers = new Map<string, Set<PresenceListener>>();
  /** The members recovering a group, and what came for them meanwhile. */
  private readonly recovering = new Map<
    WebSocketContext,
    Map<string, Publication[]>
  >();
  private readonly cursors?: GroupCursors;
  /** The presence events each member is sent, by group. */
  private readonly feeds = new Map<
    WebSocketContext,
    Map<string, Subscription>
  >();

  constructor(
    private readonly registry: GroupRegistry,
    private readonly sessions: SessionRegistry,
    private readonly tracker: PresenceTracker,
    @Inject(WS_BACKPLANE) private readonly backplane: Backplane,
    @Optional() private readonly metrics?: WsMetrics,
  ) {
    if (backplane.lossy) {
      this.cursors = new GroupCursors(
        backplane,
        (publication) => this.fanOut(publication),
        (group, position) => this.lost(group, position),
      );
    }
  }

  async onModuleInit(): Promise<void> {
    await this.backplane.start(this);
    // toUser, all() and several groups: their stream is followed as a group's, for good
    this.interested(EVERYONE, 1);
    await this.subscriptions.get(EVERYONE);
  }

  async onApplicationShutdown(): Promise<void> {
    this.cursors?.dispose();
    this.tracker.dispose();
    await this.backplane.close();
  }

  /** Sends `publication` through the backplane: `true` once it has it, `false` if it was lost. */
  publish(publication: Publication): Promise<boolean> {
    this.metrics?.broadcast();
    return this.backplane.publish(publication);
  }

  join(
    context: WebSocketContext,
    group: string,
    meta: unknown,
    watch: boolean,
  ): Promise<JoinResult> {
    if (meta !== undefined) this.tracker.track(context, group, meta);
    else this.tracker.untrack(context, group);
    if (watch) this.feed(context, group);
    else this.unfeed(context, group);
    // joining again changes the presence's meta only
    if (this.registry.members(group).has(context))
      return Promise.resolve(RECOVERED);
    this.registry.join(context, group);
    this.interested(group, 1);
    const subscribed = this.subscriptions.get(group)!;
    if (!context.link?.reliable) return subscribed.then(() => RECOVERED);
    const since = context.takePosition(group);
    if (!since) return subscribed.then(() => this.tellPosition(context, group));
    // what comes from now on waits until the history before it is sent
    let waiting = this.recovering.get(context);
    if (!waiting) this.recovering.set(context, (waiting = new Map()));
    const came: Publication[] = [];
    waiting.set(group, came);
    return subscribed.then(() => this.recover(context, group, since, came));
  }

  leave(context: WebSocketContext, group: string): void {
    this.registry.leave(context, group);
    const recovering = this.recovering.get(context);
    if (recovering?.delete(group) && !recovering.size) {
      this.recovering.delete(context);
    }
    this.tracker.untrack(context, group);
    this.unfeed(context, group);
    this.interested(group, -1);
  }

  /** Sends a member the group's presence events (`join(group, { watch: true })`) until it leaves. */
  private feed(context: WebSocketContext, group: string): void {
    let feeds = this.feeds.get(context);
    if (feeds?.has(group)) return;
    if (!feeds) this.feeds.set(context, (feeds = new Map()));
    const events = presenceEvents(
      group,
      () => this.backplane.presenceList(group),
      (listener) => this.watch(group, listener),
    );
    feeds.set(
      group,
      events.subscribe((event) => void context.send(event).catch(ignore)),
    );
  }

  private unfeed(context: WebSocketContext, group: string): void {
    const feeds = this.feeds.get(context);
    feeds?.get(group)?.unsubscribe();
    if (feeds?.delete(group) && !feeds.size) this.feeds.delete(context);
  }

  /**
   * Calls `listener` with each change of `group`'s presence; `subscribed` settles once changes
   * come (a list read after it misses none), `stop` ends it.
   */
  watch(
    group: string,
    listener: PresenceListener,
  ): { subscribed: Promise<void>; stop: () => void } {
    let listeners = this.watchers.get(group);
    if (!listeners) this.watchers.set(group, (listeners = new Set()));
    listeners.add(listener);
    this.interested(group, 1);
    this.tracker.watching(group, 1);
    const stop = () => {
      if (!listeners.delete(listener)) return;
      if (!listeners.size) this.watchers.delete(group);
      this.interested(group, -1);
      this.tracker.watching(group, -1);
    };
    return { subscribed: this.subscriptions.get(group)!, stop };
  }

  /** @internal the backplane's */
  publication(publication: Publication): void {
    const { groups, position } = publication;
    if (this.cursors && position) {
      this.cursors.receive(
        groups?.length === 1 ? groups[0] : EVERYONE,
        publication,
      );
    } else {
      this.fanOut(publication);
    }
  }

  /** @internal the backplane's */
  reconnected(): void {
    this.tracker.refresh();
    for (const group of this.watchers.keys()) this.presence(group, undefined);
  }

  /** @internal the backplane's */
  presence(group: string, diff: PresenceDiff | undefined): void {
    for (const listener of this.watchers.get(group) ?? []) {
      try {
        listener(diff);
      } catch (error) {
        logger.error(describeError(error));
      }
    }
  }

  private interested(group: string, change: 1 | -1): void {
    const count = (this.interest.get(group) ?? 0) + change;
    if (count > 0) {
      this.interest.set(group, count);
      if (count > 1 || change < 0) return;
      // where the group stands is read first, then the subscription made
      const positioned = this.cursors?.open(group) ?? SUBSCRIBED;
      this.subscriptions.set(
        group,
        positioned
          // not if it was left meanwhile (another join subscribes again)
          .then(() =>
            this.interest.has(group)
              ? this.backplane.subscribe(group)
              : undefined,
          )
          .then(ignore, ignore),
      );
      return;
    }
    this.interest.delete(group);
    this.subscriptions.delete(group);
    this.backplane.unsubscribe(group);
    this.cursors?.close(group);
  }

  /** Hands `publication` to each of its sessions on this instance. */
  private fanOut(publication: Publication): void {
    const { groups, user, except, position } = publication;
    const group = groups?.length === 1 ? groups[0] : undefined;
    if (publication.delivered) {
      // this instance handed it to its sessions while the broker was away, with no place in the
      // group's history: its reliable members now learn it, or they would recover it again
      if (group && position)
        this.tellMembers(Frame.GroupPosition, group, position);
      return;
    }
    const excluded = except?.length ? new Set(except) : undefined;
    let sent = 0;
    for (const member of this.audience(publication)) {
      const { state } = member;
      if (state !== 'open' && state !== 'reconnecting') continue;
      if (excluded && member.knownId && excluded.has(member.knownId)) continue;
      if (user !== undefined && member.userId !== user) continue;
      const waiting = group && this.recovering.get(member)?.get(group);
      if (waiting && publication.position) waiting.push(publication);
      else if (this.hand(member, publication, group)) sent++;
    }
    this.metrics?.delivered(sent);
  }

  private *audience({ groups }: Publication): Iterable<WebSocketContext> {
    if (!groups?.length) return yield* this.sessions.contexts();
    if (groups.length === 1) return yield* this.registry.members(groups[0]);
    const members = new Set<WebSocketContext>();
    for (const group of groups) {
      for (const member of this.registry.members(group)) members.add(member);
    }
    yield* members;
  }

  /** Hands a publication to a member: a group's with its group and place (`g`), others as they are. */
  private hand(
    member: WebSocketContext,
    publication: Publication,
    group?: string,
  ): boolean {
    return member.deliver(
      publication.payload,
      publication.binary,
      group,
      group ? (publication.position ?? UNPLACED) : undefined,
    );
  }

  /** Tells a reliable member where `group` stands, which its client recovers from later. */
  private tellPosition(
    context: WebSocketContext,
    group: string,
  ): Promise<JoinResult> {
    return this.backplane.position(group).then(
      (position) => {
        if (context.groups.has(group)) {
          context.groupFrame(Frame.GroupPosition, group, position);
        }
        return RECOVERED;
      },
      () => RECOVERED,
    );
  }

  /**
   * Sends a member whose client lost its session what `group` got since `since`: every message,
   * before any that came meanwhile; or, when the history no longer has them all, none, and `l`.
   */
  private async recover(
    context: WebSocketContext,
    group: string,
    since: StreamPosition,
    came: Publication[],
  ): Promise<JoinResult> {
    const history = await this.backplane
      .history(group, since)
      .catch((error: unknown) => {
        logger.warn(GROUP_MESSAGES_LOST(group, describeError(error)));
        return undefined;
      });
    const now = history
      ? undefined
      : await this.backplane.position(group).catch(() => undefined);
    const waiting = this.recovering.get(context);
    if (waiting?.get(group) !== came) return RECOVERED; // it left meanwhile
    waiting.delete(group);
    if (!waiting.size) this.recovering.delete(context);
    let last = history?.position ?? now;
    if (history) {
      let missed = 0;
      const { id, formerId } = context;
      for (const publication of history.publications) {
        if (publication.position!.offset <= since.offset) continue;
        const { except } = publication;
        if (!except?.some((skip) => skip === id || skip === formerId)) {
          this.hand(context, publication, group);
          missed++;
        }
      }
      this.metrics?.recovery(true);
      this.handWaiting(context, group, came, last);
      return { recovered: true, missed };
    }
    this.metrics?.recovery(false);
    context.groupFrame(
      Frame.GroupLost,
      group,
      last ?? { offset: 0, epoch: '-' },
    );
    last = undefined;
    this.handWaiting(context, group, came, last);
    return { recovered: false, missed: 0 };
  }

  /** What came for a recovering member, without what the history already gave it. */
  private handWaiting(
    context: WebSocketContext,
    group: string,
    came: Publication[],
    after: StreamPosition | undefined,
  ): void {
    for (const publication of came) {
      const { offset, epoch } = publication.position!;
      if (after && epoch === after.epoch && offset <= after.offset) continue;
      this.hand(context, publication, group);
    }
  }

  /** The group's messages before `position` never reached this instance: its reliable members hear. */
  private lost(group: string, position: StreamPosition): void {
    this.tellMembers(Frame.GroupLost, group, position);
  }

  private tellMembers(
    kind: typeof Frame.GroupPosition | typeof Frame.GroupLost,
    group: string,
    position: StreamPosition,
  ): void {
    for (const member of this.registry.members(group)) {
      member.groupFrame(kind, group, position);
    }
  }
}
