// Three instances of test/fixtures/cluster-instance.ts (processes of their own) on one Redis,
// with clients spread over them: group messages, toUser and presence across instances, and
// what the README promises when an instance crashes or Redis goes away.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { connect, type WsClient } from 'nestjs-ws-endpoints/client';
import { Instance } from './utils/instance';
import { describeWithRedis, PrivateRedis } from './utils/redis';
import { until as untilWithin } from './utils/until';
import { within } from './utils/within';

/** Waits as `until` does, 15 s by default: instances are processes of their own, and CI is loaded. */
const until = (condition: () => boolean, what: string, timeout = 15_000) =>
  untilWithin(condition, what, timeout);

const clientOptions = {
  WebSocket: WebSocket as never,
  reconnect: { initialDelay: 20, maxDelay: 100 },
};

interface Chat {
  from?: string;
  text?: string;
  joined?: string;
  recovered?: boolean;
  missed?: number;
  pid?: number;
  /** The user a `toUser` message was sent to. */
  to?: string;
}

/** A reliable chat member (the package's client), with what it got from the moment it is made. */
class Member {
  readonly got: Chat[] = [];
  readonly lost: string[] = [];
  readonly client!: WsClient;

  constructor(
    port: number,
    room: string,
    readonly user: string,
    reliable = true,
  ) {
    if (!reliable) return;
    this.client = connect(
      `ws://127.0.0.1:${port}/room/${room}?user=${user}`,
      clientOptions,
    );
    this.client.on('message', (message) => this.got.push(message.json<Chat>()));
    this.client.on('lost', ({ group }) => this.lost.push(group));
  }

  close(): void {
    this.client.close();
  }

  /** The room's messages, without the `joined` notes. */
  get texts(): string[] {
    return this.got.flatMap((m) =>
      m.text === undefined || m.to ? [] : [`${m.from}:${m.text}`],
    );
  }

  /** What was sent to its user (`toUser`). */
  get private(): string[] {
    return this.got.flatMap((m) => (m.to ? [`${m.from}:${m.text}`] : []));
  }

  get joins(): Chat[] {
    return this.got.filter((m) => m.joined !== undefined);
  }

  async joined(count = 1): Promise<void> {
    await until(
      () => this.joins.length >= count,
      `${this.user} has joined (${count})`,
      15_000,
    );
  }

  say(text: string, toUser?: string): void {
    this.client.send(toUser ? { text, toUser } : { text });
  }
}

/** A member of a plain endpoint: a raw `ws` client, with what it got from the moment it is made. */
class PlainMember extends Member {
  readonly ws: WebSocket;

  constructor(port: number, room: string, user: string) {
    super(0, room, user, false);
    this.ws = new WebSocket(
      `ws://127.0.0.1:${port}/plain/${room}?user=${user}`,
    );
    this.ws.on('message', (data: Buffer) =>
      this.got.push(JSON.parse(data.toString()) as Chat),
    );
  }

  override close(): void {
    this.ws.terminate();
  }

  override say(text: string): void {
    this.ws.send(JSON.stringify({ text }));
  }
}

/** A raw `ws` client on `/presence/:room`, with the events it got. */
class Watcher {
  readonly events: Array<{
    type: 'state' | 'diff';
    members?: Array<{ key: string }>;
    joins?: Array<{ key: string }>;
    leaves?: Array<{ key: string }>;
  }> = [];
  readonly ws: WebSocket;

  constructor(port: number, room: string) {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}/presence/${room}`);
    this.ws.on('message', (data: Buffer) =>
      this.events.push(JSON.parse(data.toString())),
    );
  }

  /** The members, from the state and the diffs since. */
  get members(): string[] {
    const members = new Set<string>();
    for (const event of this.events) {
      if (event.type === 'state') members.clear(); // a state replaces the list
      for (const member of event.members ?? []) members.add(member.key);
      for (const member of event.joins ?? []) members.add(member.key);
      for (const member of event.leaves ?? []) members.delete(member.key);
    }
    return Array.from(members).sort();
  }

  /**
   * How often `key` appeared where it was not listed: in a state, or joining. (A change that came
   * while the first list was read follows that list, and may repeat what it says.)
   */
  joinsOf(key: string): number {
    let listed = false;
    let appeared = 0;
    for (const event of this.events) {
      const here = (members?: Array<{ key: string }>) =>
        members?.some((m) => m.key === key) ?? false;
      if (event.type === 'state') listed = false;
      if (!listed && (here(event.members) || here(event.joins))) appeared++;
      if (here(event.members) || here(event.joins)) listed = true;
      if (here(event.leaves)) listed = false;
    }
    return appeared;
  }

  leavesOf(key: string): number {
    return this.events.filter((e) => e.leaves?.some((m) => m.key === key))
      .length;
  }
}

describeWithRedis('groups, toUser and presence across three instances', () => {
  const instances: Instance[] = [];
  const members: Member[] = [];
  const watchers: Watcher[] = [];
  let prefix: string;

  async function start(
    count: number,
    env: Record<string, string> = {},
    redisUrl?: string,
  ) {
    const started = await Promise.all(
      Array.from({ length: count }, () =>
        Instance.start(0, prefix, {
          fixture: 'cluster-instance',
          env: {
            PRESENCE_GRACE: '300',
            PRESENCE_TTL: '1500',
            ...env,
            ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
          },
        }),
      ),
    );
    instances.push(...started);
    return started;
  }

  function member(instance: Instance, user: string, room = 'lobby'): Member {
    const made = new Member(instance.port, room, user);
    members.push(made);
    return made;
  }

  function plainMember(instance: Instance, user: string): Member {
    const made = new PlainMember(instance.port, 'lobby', user);
    members.push(made);
    return made;
  }

  function watcher(instance: Instance, room = 'lobby'): Watcher {
    const made = new Watcher(instance.port, room);
    watchers.push(made);
    return made;
  }

  beforeEach(() => {
    // each test has Redis keys and channels of its own
    prefix = `test:${randomUUID()}`;
  });

  afterEach(async () => {
    for (const made of members.splice(0)) made.close();
    for (const made of watchers.splice(0)) made.ws.terminate();
    await Promise.all(
      instances.splice(0).map((instance) => instance.stop('SIGKILL')),
    );
  });

  it('every member receives every group message once, in each sender order and in one order for all, reliable or plain', async () => {
    const cluster = await start(3);
    const room = Array.from({ length: 6 }, (_, i) =>
      i < 3
        ? member(cluster[i % 3], `u${i}`)
        : plainMember(cluster[i % 3], `u${i}`),
    );
    await Promise.all(room.map((m) => m.joined()));
    const each = 25;
    for (let n = 0; n < each; n++) for (const m of room) m.say(String(n));
    const total = each * room.length;
    await Promise.all(
      room.map((m) =>
        until(
          () => m.texts.length >= total,
          `${m.user} gets ${total} messages`,
          20_000,
        ),
      ),
    );
    for (const m of room) {
      expect(m.texts).toHaveLength(total);
      for (const sender of room) {
        const fromSender = m.texts.filter((t) =>
          t.startsWith(`${sender.user}:`),
        );
        expect(fromSender).toEqual(
          Array.from({ length: each }, (_, n) => `${sender.user}:${n}`),
        );
      }
    }
    // the group's offsets: one order, the same for every member on every instance
    expect(room.map((m) => m.texts)).toEqual(room.map(() => room[0].texts));
  });

  it('toUser reaches every session of the user, on every instance, once', async () => {
    const cluster = await start(3);
    const dana = [member(cluster[0], 'dana'), member(cluster[2], 'dana')];
    const sender = member(cluster[1], 'sam');
    const other = member(cluster[2], 'olga');
    await Promise.all([...dana, sender, other].map((m) => m.joined()));
    sender.say('psst', 'dana');
    sender.say('all');
    await Promise.all(
      [...dana, other].map((m) =>
        until(
          () => m.texts.includes('sam:all'),
          `${m.user} gets the room message`,
        ),
      ),
    );
    await Promise.all(
      dana.map((m) => until(() => m.private.length === 1, 'dana gets hers')),
    );
    for (const session of dana) {
      expect(session.private).toEqual(['sam:psst']);
      expect(session.texts).toEqual(['sam:all']);
    }
    // a later message to the room comes after the one to dana: no second copy was on its way
    sender.say('last');
    await until(() => other.texts.includes('sam:last'), 'olga gets the last');
    await Promise.all(
      dana.map((m) => until(() => m.texts.includes('sam:last'), 'dana too')),
    );
    expect(dana.map((m) => m.private)).toEqual([['sam:psst'], ['sam:psst']]);
    expect(other.private).toEqual([]);
  });

  it('presence lists the members of every instance, and watchers get joins and leaves as diffs', async () => {
    const cluster = await start(3);
    const early = watcher(cluster[0]);
    await until(() => early.events.length === 1, 'the first state');
    expect(early.events[0]).toEqual({
      type: 'state',
      group: 'lobby',
      members: [],
    });
    const room = [
      member(cluster[0], 'ann'),
      member(cluster[1], 'bob'),
      member(cluster[2], 'cy'),
    ];
    await Promise.all(room.map((m) => m.joined()));
    await until(() => early.members.length === 3, 'three joins');
    expect(early.members).toEqual(['ann', 'bob', 'cy']);
    const late = watcher(cluster[2]);
    await until(() => late.events.length === 1, 'the state');
    expect(late.members).toEqual(['ann', 'bob', 'cy']);
    expect(late.events[0].members).toContainEqual({
      key: 'bob',
      userId: 'bob',
      meta: { name: 'bob' },
    });
    // a second session of a user is no new member
    const second = member(cluster[0], 'bob');
    await second.joined();
    room[1].close();
    room[2].close();
    await until(
      () => early.leavesOf('cy') === 1 && late.leavesOf('cy') === 1,
      'cy leaves, after the grace period',
      15_000,
    );
    expect(early.joinsOf('bob')).toBe(1);
    expect(early.leavesOf('bob')).toBe(0);
    expect(early.members).toEqual(['ann', 'bob']);
  });

  it('a user who reconnects to another instance within the grace period makes no leave and join', async () => {
    // a grace period long enough for eve's reconnection on a loaded machine
    const cluster = await start(3, { PRESENCE_GRACE: '5000' });
    const seen = watcher(cluster[0]);
    const eve = new WebSocket(
      `ws://127.0.0.1:${cluster[1].port}/plain/lobby?user=eve`,
    );
    const zed = new WebSocket(
      `ws://127.0.0.1:${cluster[1].port}/plain/lobby?user=zed`,
    );
    await until(() => seen.members.length === 2, 'eve and zed are members');
    eve.close();
    const back = new WebSocket(
      `ws://127.0.0.1:${cluster[2].port}/plain/lobby?user=eve`,
    );
    const joined = new Promise((resolve) => back.once('message', resolve));
    await within(joined, 15_000, 'eve is back');
    // zed leaves after eve did: by the time his leave is announced, eve's would have been
    zed.close();
    await until(() => seen.leavesOf('zed') === 1, 'zed leaves');
    back.terminate();
    expect(seen.leavesOf('eve')).toBe(0);
    expect(seen.joinsOf('eve')).toBe(1);
  });

  it('the members of an instance killed with SIGKILL leave every list within the TTL and a third', async () => {
    const cluster = await start(3);
    const seen = [watcher(cluster[0]), watcher(cluster[1])];
    const kim = member(cluster[2], 'kim');
    const lea = member(cluster[0], 'lea');
    await Promise.all([kim.joined(), lea.joined()]);
    await until(
      () => seen.every((w) => w.members.length === 2),
      'both are members everywhere',
    );
    await cluster[2].stop('SIGKILL');
    // PRESENCE_TTL is 1500: the bound is 2000 ms
    await within(
      until(
        () => seen.every((w) => w.leavesOf('kim') === 1),
        'kim leaves',
        60_000,
      ),
      2000 + 3000,
      'kim leaves every list',
    );
    expect(seen.map((w) => w.members)).toEqual([['lea'], ['lea']]);
  });

  /**
   * Rita on one instance and Sam on another; Rita's instance is killed, `missed` messages of
   * Sam's go to the room, and a new instance takes the crashed one's port (it never had Rita's
   * session): resolves once Rita, on it, has the live message that follows.
   */
  async function crashAndRecover(
    missed: string[],
    env: Record<string, string> = {},
  ) {
    const [first, other] = await start(2, env);
    const rita = member(first, 'rita');
    const sam = member(other, 'sam');
    await Promise.all([rita.joined(), sam.joined()]);
    sam.say('before');
    await until(
      () => rita.texts.includes('sam:before'),
      'rita gets the first message',
    );
    await first.stop('SIGKILL');
    await until(
      () => rita.client.state === 'reconnecting',
      'rita sees the drop',
    );
    for (const text of missed) sam.say(text);
    await until(
      () => sam.texts.includes(`sam:${missed.at(-1)}`),
      'the room got them',
    );
    instances.push(
      await Instance.start(first.port, prefix, {
        fixture: 'cluster-instance',
        env,
      }),
    );
    await rita.joined(2);
    sam.say('after');
    await until(
      () => rita.texts.includes('sam:after'),
      'rita gets the live message',
    );
    return rita;
  }

  it('a reliable client whose instance crashed recovers what its room got meanwhile, through another instance', async () => {
    const rita = await crashAndRecover(['while-away-1', 'while-away-2']);
    expect(rita.texts).toEqual([
      'sam:before',
      'sam:while-away-1',
      'sam:while-away-2',
      'sam:after',
    ]);
    expect(rita.joins[1]).toMatchObject({ recovered: true, missed: 2 });
    expect(rita.lost).toEqual([]);
  });

  it('recovers all or nothing: when the history no longer has every missed message, the client gets none and is told', async () => {
    const missed = Array.from({ length: 5 }, (_, n) => `missed-${n}`);
    const rita = await crashAndRecover(missed, { HISTORY_SIZE: '3' });
    expect(rita.texts).toEqual(['sam:before', 'sam:after']);
    expect(rita.joins[1]).toMatchObject({ recovered: false, missed: 0 });
    expect(rita.lost).toEqual(['lobby']);
  });

  describe('when Redis goes away', () => {
    let redis: PrivateRedis;

    beforeEach(async () => {
      redis = await PrivateRedis.start();
    });

    afterEach(async () => {
      await redis.down();
    });

    it('local members go on getting local messages; what was published meanwhile reaches the others once Redis is back, once each, in order', async () => {
      const [a, b] = await start(2, {}, redis.url);
      const a1 = member(a, 'a1');
      const a2 = member(a, 'a2');
      const b1 = member(b, 'b1');
      const all = [a1, a2, b1];
      await Promise.all(all.map((m) => m.joined()));
      a1.say('up');
      await Promise.all(
        all.map((m) =>
          until(() => m.texts.includes('a1:up'), `${m.user} gets it`),
        ),
      );
      await redis.down();
      a1.say('down-1');
      a1.say('down-2');
      b1.say('down-3');
      a1.say('psst', 'b1'); // to b1's user, on the other instance
      // local delivery goes on: a2 is on a1's instance, b1 hears itself
      await until(
        () => a2.texts.includes('a1:down-2') && b1.texts.includes('b1:down-3'),
        'local messages',
      );
      expect(b1.texts).not.toContain('a1:down-1');
      await redis.up();
      await Promise.all(
        all.map((m) =>
          until(() => m.texts.length === 4, `${m.user} gets all four`, 15_000),
        ),
      );
      await until(
        () => b1.private.length === 1,
        'b1 gets what was sent to its user',
      );
      expect(b1.private).toEqual(['a1:psst']);
      for (const m of all) {
        expect(m.texts.filter((t) => t.startsWith('a1:'))).toEqual([
          'a1:up',
          'a1:down-1',
          'a1:down-2',
        ]);
        expect(m.texts.filter((t) => t.startsWith('b1:'))).toEqual([
          'b1:down-3',
        ]);
      }
      a2.say('after');
      await Promise.all(
        all.map((m) =>
          until(() => m.texts.includes('a2:after'), `${m.user} gets the next`),
        ),
      );
      expect(all.map((m) => m.texts.length)).toEqual([5, 5, 5]);
      expect(b1.private).toEqual(['a1:psst']);
    });

    it("what pub/sub drops while Redis stays up is read from the group's stream, and toUser's from everyone's, once, in order", async () => {
      const [a, b] = await start(2, {}, redis.url);
      const sender = member(a, 'sender');
      const far = member(b, 'far');
      await Promise.all([sender.joined(), far.joined()]);
      sender.say('1');
      await until(() => far.texts.includes('sender:1'), 'the first message');
      const admin = new Redis(redis.url);
      try {
        // every subscriber connection is dropped: ioredis takes ≥ 50 ms to connect again
        await admin.client('KILL', 'TYPE', 'pubsub');
        sender.say('2');
        sender.say('3');
        sender.say('psst', 'far');
      } finally {
        admin.disconnect();
      }
      // nothing follows them: only the periodic position check (5 s) can find them
      await until(() => far.texts.length === 3, 'far gets both', 15_000);
      expect(far.texts).toEqual(['sender:1', 'sender:2', 'sender:3']);
      await until(
        () => sender.texts.length === 3,
        'so does the sender',
        15_000,
      );
      expect(sender.texts).toEqual(['sender:1', 'sender:2', 'sender:3']);
      await until(
        () => far.private.length === 1,
        'far gets the one to its user',
      );
      expect(far.private).toEqual(['sender:psst']);
    });

    it('presence converges once Redis is back', async () => {
      const [a, b] = await start(2, {}, redis.url);
      const room = [member(a, 'ann'), member(b, 'bob')];
      await Promise.all(room.map((m) => m.joined()));
      await redis.down();
      await redis.up();
      // the restarted Redis is empty: each instance adds its members again on its next refresh
      const seen = watcher(a);
      await until(
        () => seen.members.length === 2,
        'both members are listed again',
        15_000,
      );
      expect(seen.members).toEqual(['ann', 'bob']);
    });
  });
});
