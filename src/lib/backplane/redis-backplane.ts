import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { describeError } from '../errors/describe-error';
import { SafeLogger } from '../errors/safe-logger';
import { BROADCAST_LOST, BROKER_AWAY, BROKER_BACK } from '../messages';
import {
  type Backplane,
  type BackplaneReceiver,
  EVERYONE,
  type GroupHistory,
  type PresenceDiff,
  type PresenceEntry,
  type Publication,
  type StreamPosition,
} from './backplane';
import { type Held, OutageBuffer, type OutageLimits } from './outage-buffer';
import { decodeMessage, encodeBody } from './publication-codec';
import * as scripts from './redis-scripts';

/** Options of `RedisBackplane`. @publicApi */
export interface RedisBackplaneOptions {
  /** Prefix of its keys and channels. @default 'ws' */
  prefix?: string;
  /**
   * Each group's history, from which reliable clients recover what they missed on any
   * instance: its length, and how long an idle group keeps it (ms).
   * @default { size: 1000, ttl: 300000 }
   */
  history?: { size?: number; ttl?: number };
  /** What is held while Redis is away. @default { messages: 10000, bytes: 16 MiB, maxAge: 60000 } */
  outage?: OutageLimits;
  /**
   * ms Redis has to answer a command before it counts as away: what was being published is then
   * handed to this instance's sessions and held (if Redis did run it after all, the other
   * instances get it twice). @default 2000
   */
  commandTimeout?: number;
}

const logger = new SafeLogger('RedisBackplane');

/**
 * A backplane on Redis 7 (ioredis), for several instances of an app: broadcasts and presence
 * changes go over sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, so a Redis Cluster works too); a
 * publication to one group gets the group's next offset and is kept in its capped stream in the
 * same script, so that a reliable client recovers what it missed through any instance.
 *
 * While Redis is away, this instance's sessions still get what is published here, and the
 * publications are held (bounded) and published when Redis is back; what does not fit is lost,
 * and its `send()` resolves `false`. It makes two connections of its own from the client you
 * give (`duplicate()`), and closes them; yours stays yours.
 * @example
 * WsEndpointsModule.forRoot({ backplane: new RedisBackplane(new Redis(process.env.REDIS_URL)) })
 * @publicApi
 */
export class RedisBackplane implements Backplane {
  readonly lossy = true;
  /** This instance's id on the channels. */
  readonly instance = randomBytes(9).toString('base64url');
  private readonly commands: Redis;
  /** The shard channels this instance listens to. */
  private readonly channels = new Set<string>();
  private readonly subscriber: Redis;
  private receiver?: BackplaneReceiver;
  private readonly prefix: string;
  private readonly historySize: number;
  private readonly historyTtl: number;
  private readonly held: OutageBuffer;
  private flushing = false;
  private away = false;
  private lossReported = false;
  private closed = false;

  constructor(
    redis: Redis,
    {
      prefix = 'ws',
      history = {},
      outage,
      commandTimeout = 2000,
    }: RedisBackplaneOptions = {},
  ) {
    this.prefix = prefix;
    this.historySize = history.size ?? 1000;
    this.historyTtl = history.ttl ?? 300_000;
    this.held = new OutageBuffer(outage);
    // a publication is held by us, not queued or sent again by ioredis, while Redis is away: a
    // command fails at once when the connection is down, when it breaks under the command, or
    // when Redis does not answer within commandTimeout (a partition that resets nothing)
    this.commands = redis.duplicate({
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout,
      lazyConnect: true,
    });
    // we subscribe again ourselves: ioredis would leave its promises unhandled
    this.subscriber = redis.duplicate({
      lazyConnect: true,
      autoResubscribe: false,
    });
    let ready = false;
    this.subscriber.on('ready', () => {
      const again = Array.from(this.channels, (channel) =>
        this.listen(channel),
      );
      if (!ready) return void (ready = true);
      // back after it was away: presence is listed again once changes come again
      void Promise.all(again).then(() => this.receiver?.reconnected());
    });
    for (const connection of [this.commands, this.subscriber]) {
      connection.on('error', (error: unknown) => this.lostBroker(error));
    }
    this.commands.on('ready', () => this.flush());
    // EVALSHA, with the script sent again when Redis does not have it (after a restart)
    for (const [name, lua, numberOfKeys] of SCRIPTS) {
      this.commands.defineCommand(name, { lua, numberOfKeys });
    }
    this.subscriber.on('smessageBuffer', (channel: Buffer, message: Buffer) =>
      this.message(channel, message),
    );
  }

  async start(receiver: BackplaneReceiver): Promise<void> {
    this.receiver = receiver;
    // a Redis that is away at startup is waited for in the background
    await Promise.all([
      this.commands.connect().catch(ignore),
      this.subscriber.connect().catch(ignore),
    ]);
  }

  publish(publication: Publication): Promise<boolean> {
    if (this.closed) return LOST;
    return new Promise((settle) => {
      const group =
        publication.groups?.length === 1 ? publication.groups[0] : undefined;
      const item: Held = {
        body: encodeBody(publication, this.instance, false),
        group,
        at: Date.now(),
        settle: (published) => {
          if (!published) this.reportLoss();
          settle(published);
        },
      };
      if (this.held.size || this.commands.status !== 'ready')
        return this.hold(item, publication);
      this.send(item).then(
        () => settle(true),
        (error: unknown) => {
          // Redis answered, and refused it (out of memory, a script error): not a lost Redis
          if (isReply(error)) return item.settle(false);
          this.lostBroker(error);
          this.hold(item, publication);
        },
      );
    });
  }

  subscribe(group: string): Promise<void> {
    return this.listen(this.channel(group));
  }

  unsubscribe(group: string): void {
    const channel = this.channel(group);
    this.channels.delete(channel);
    this.subscriber.sunsubscribe(channel).catch(ignore);
  }

  async history(
    group: string,
    since: StreamPosition,
  ): Promise<GroupHistory | undefined> {
    const [offset, epoch, complete, ...messages] =
      (await this.run.wsHistoryBuffer(
        this.key(group, 'm'),
        this.key(group, 's'),
        since.offset,
        since.epoch,
      )) as [number, Buffer, number, ...Buffer[]];
    if (!complete) return undefined;
    const publications: Publication[] = [];
    for (const message of messages) {
      const publication = decodeMessage(message, this.instance);
      if (publication) publications.push(publication);
    }
    return { publications, position: { offset, epoch: epoch.toString() } };
  }

  async position(group: string): Promise<StreamPosition> {
    const [offset, epoch] = (await this.run.wsPosition(
      this.key(group, 'm'),
      newEpoch(),
      this.historyTtl,
    )) as [number, string];
    return { offset, epoch };
  }

  async presenceJoin(
    group: string,
    entry: PresenceEntry,
    expiresAt: number,
  ): Promise<void> {
    await this.run.wsPresenceJoin(
      ...this.presenceKeys(group),
      entry.session,
      entry.key,
      JSON.stringify(entry),
      expiresAt,
      this.channel(group),
      keyTtl(expiresAt),
    );
  }

  async presenceRefresh(
    group: string,
    sessions: string[],
    expiresAt: number,
  ): Promise<string[]> {
    return (await this.run.wsPresenceRefresh(
      ...this.presenceKeys(group),
      expiresAt,
      keyTtl(expiresAt),
      ...sessions,
    )) as string[];
  }

  async presenceLeave(
    group: string,
    session: string,
    expiresAt: number,
  ): Promise<void> {
    await this.run.wsPresenceLeave(this.key(group, 'pe'), session, expiresAt);
  }

  async presenceSweep(group: string): Promise<void> {
    await this.run.wsPresenceSweep(
      ...this.presenceKeys(group),
      Date.now(),
      this.channel(group),
    );
  }

  async presenceList(group: string): Promise<PresenceEntry[]> {
    const entries = (await this.run.wsPresenceList(
      this.key(group, 'p'),
      this.key(group, 'pe'),
      Date.now(),
    )) as string[];
    return entries.map((entry) => JSON.parse(entry) as PresenceEntry);
  }

  /** Sweeps first: a member whose time is up is counted no more than listed. */
  async presenceCount(group: string): Promise<number> {
    return (await this.run.wsPresenceSweep(
      ...this.presenceKeys(group),
      Date.now(),
      this.channel(group),
    )) as number;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.receiver = undefined;
    this.held.clear();
    await Promise.all([this.commands, this.subscriber].map(disconnect));
  }

  /** Numbers a publication in its stream (its group's, or everyone's), keeps it, publishes it. */
  private send({ body, group = EVERYONE }: Held): Promise<[number, string]> {
    return this.run.wsPublish(
      this.key(group, 'm'),
      this.key(group, 's'),
      body,
      this.historySize,
      this.historyTtl,
      this.channel(group),
      newEpoch(),
    ) as Promise<[number, string]>;
  }

  /** Holds a publication Redis could not take, after handing it to this instance's sessions. */
  private hold(item: Held, publication: Publication): void {
    this.receiver?.publication(publication);
    item.body = encodeBody(publication, this.instance, true);
    item.publication = publication;
    this.held.hold(item);
  }

  /** Logs the first publication lost in an outage. */
  private reportLoss(): void {
    if (this.lossReported) return;
    this.lossReported = true;
    logger.warn(BROADCAST_LOST);
  }

  /** Publishes what was held, oldest first, until Redis is away again. */
  private async flush(): Promise<void> {
    if (this.away) logger.warn(BROKER_BACK);
    this.away = this.lossReported = false;
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (
        let item = this.held.first();
        item && !this.closed;
        item = this.held.first()
      ) {
        const placed = await this.send(item).then(
          ([offset, epoch]) => ({ offset, epoch }),
          (error: unknown) => {
            if (isReply(error)) return undefined;
            throw error;
          },
        );
        this.held.shift();
        item.settle(placed !== undefined);
        // this instance learns its place now, not from its echo, which its subscription may miss
        if (placed) {
          this.receiver?.publication({
            ...item.publication!,
            position: placed,
            delivered: true,
          });
        }
      }
    } catch (error) {
      this.lostBroker(error);
    } finally {
      this.flushing = false;
    }
  }

  private message(channel: Buffer, message: Buffer): void {
    const receiver = this.receiver;
    if (!receiver) return;
    if (message[0] === P && message[1] === SPACE) {
      let diff: PresenceDiff;
      try {
        diff = JSON.parse(message.toString('utf8', 2)) as PresenceDiff;
      } catch {
        return; // not ours
      }
      // the channel is `<prefix>:{<group>}`
      const group = channel
        .toString('utf8', this.prefix.length + 2, channel.length - 1)
        .replace(ESCAPED_TAG_CHARACTERS, unescapeTag);
      receiver.presence(group, diff);
      return;
    }
    const publication = decodeMessage(message, this.instance);
    if (publication) receiver.publication(publication);
  }

  private lostBroker(error: unknown): void {
    if (this.away || this.closed) return;
    this.away = true;
    logger.warn(BROKER_AWAY(describeError(error)));
  }

  /** Subscribes to a shard channel; at once while Redis is away (ioredis subscribes when it is back). */
  private listen(channel: string): Promise<void> {
    this.channels.add(channel);
    const subscribed = this.subscriber.ssubscribe(channel).then(ignore, ignore);
    return this.subscriber.status === 'ready' ? subscribed : DONE;
  }

  /** The scripts, as commands of the connection. */
  private get run(): ScriptCommands {
    return this.commands as unknown as ScriptCommands;
  }

  /**
   * A group's channel, `<prefix>:{<group>}`, the group's `{`, `}` and `%` escaped (`%7b`…) so
   * that the braces make its hash tag; everyone's is `<prefix>:all{all}`.
   */
  private channel(group: string): string {
    return group === EVERYONE
      ? `${this.prefix}:all{all}`
      : `${this.prefix}:{${group.replace(TAG_CHARACTERS, escapeTag)}}`;
  }

  private key(group: string, kind: string): string {
    return `${this.channel(group)}:${kind}`;
  }

  /** Entries, expiries, members' session counts, sessions' keys. */
  private presenceKeys(group: string): [string, string, string, string] {
    return [
      this.key(group, 'p'),
      this.key(group, 'pe'),
      this.key(group, 'pk'),
      this.key(group, 'ps'),
    ];
  }
}

type Script = (...args: Array<string | number | Buffer>) => Promise<unknown>;
type ScriptCommands = Record<
  | 'wsPublish'
  | 'wsPosition'
  | 'wsHistoryBuffer'
  | 'wsPresenceJoin'
  | 'wsPresenceRefresh'
  | 'wsPresenceLeave'
  | 'wsPresenceSweep'
  | 'wsPresenceList',
  Script
>;

const SCRIPTS: Array<[string, string, number]> = [
  ['wsPublish', scripts.PUBLISH, 2],
  ['wsPosition', scripts.POSITION, 1],
  ['wsHistory', scripts.HISTORY, 2],
  ['wsPresenceJoin', scripts.PRESENCE_JOIN, 4],
  ['wsPresenceRefresh', scripts.PRESENCE_REFRESH, 4],
  ['wsPresenceLeave', scripts.PRESENCE_LEAVE, 1],
  ['wsPresenceSweep', scripts.PRESENCE_SWEEP, 4],
  ['wsPresenceList', scripts.PRESENCE_LIST, 2],
];

const LOST = Promise.resolve(false);

const TAG_CHARACTERS = /[{}%]/g;
const ESCAPED_TAG_CHARACTERS = /%(7b|7d|25)/g;
const escapeTag = (character: string) =>
  `%${character.charCodeAt(0).toString(16)}`;
const unescapeTag = (_escaped: string, hex: string) =>
  String.fromCharCode(parseInt(hex, 16));

/** Whether `error` is Redis's answer to a command (it refused it), not a lost connection. */
function isReply(error: unknown): boolean {
  return (error as Error | undefined)?.name === 'ReplyError';
}

const P = 0x70;
const SPACE = 0x20;
const DONE = Promise.resolve();
function ignore(): void {}

/** Says goodbye to Redis when it is there (what was sent is answered first), else just stops. */
async function disconnect(connection: Redis): Promise<void> {
  if (connection.status === 'ready') {
    await connection.quit().catch(() => connection.disconnect());
  } else {
    connection.disconnect();
  }
}

function newEpoch(): string {
  return randomBytes(8).toString('base64url');
}

/** Presence keys outlive their last expiry by a minute, then go. */
function keyTtl(expiresAt: number): number {
  return Math.max(expiresAt - Date.now(), 0) + 60_000;
}
