// Presence on RedisBackplane under what users and instances really do: a name cut in the middle
// of an emoji, a meta nested deep, an instance that dies, a watcher that goes away at once,
// Redis restarting empty. The README promises that every list converges: a member whose
// sessions all left leaves after the grace period, a dead instance's members within ttl + ttl/3.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  Presence,
  type PresenceEvent,
  RedisBackplane,
} from 'nestjs-ws-endpoints';
import { GroupHarness, shardChannels } from './utils/group-harness';
import { describeWithRedis, PrivateRedis, REDIS_URL } from './utils/redis';
import { until } from './utils/until';

const GRACE = 100;
const TTL = 600;

/** The events of `presence.watch(group)`, and the member keys they add up to. */
function watch(presence: Presence, group: string) {
  const events: PresenceEvent[] = [];
  const subscription = presence.watch(group).subscribe((e) => events.push(e));
  const members = () => {
    const keys = new Set<string>();
    for (const event of events) {
      // a state replaces the list (a new one comes when the broker is back)
      if (event.type === 'state') {
        keys.clear();
        event.members.forEach((m) => keys.add(m.key));
      } else {
        event.joins.forEach((m) => keys.add(m.key));
        event.leaves.forEach((m) => keys.delete(m.key));
      }
    }
    return Array.from(keys).sort();
  };
  return { events, subscription, members };
}

async function harnessOn(url: string, prefix: string) {
  return GroupHarness.start({
    heartbeat: false,
    presence: { grace: GRACE, ttl: TTL },
    backplane: new RedisBackplane(new Redis(url, { lazyConnect: true }), {
      prefix,
    }),
  });
}

describeWithRedis('presence on Redis', () => {
  let harness: GroupHarness;
  let prefix: string;
  let admin: Redis;
  const stops: Array<() => unknown> = [];

  beforeAll(async () => {
    prefix = `presence-attack:${randomUUID()}`;
    harness = await harnessOn(REDIS_URL, prefix);
    admin = new Redis(REDIS_URL);
  });

  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
    await harness.reset();
  });

  afterAll(async () => {
    await harness.close();
    admin.disconnect();
  });

  it.each([
    // a display name cut to 16 UTF-16 units, in the middle of an emoji
    ['a plain name', { name: 'Zoë' }],
    [
      'a lone surrogate (a name cut in an emoji)',
      { name: 'Zoë 🎉🎉🎉'.slice(0, 5) },
    ],
    [
      'nesting 1,000 levels deep',
      Array.from({ length: 1000 }).reduce<unknown>((inner) => ({ inner }), 0),
    ],
  ])(
    'a member whose meta has %s leaves after the grace period, and is no longer counted',
    async (_what, meta) => {
      const group = `poison-${randomUUID()}`;
      const presence = harness.get(Presence);
      const seen = watch(presence, group);
      stops.push(() => seen.subscription.unsubscribe());
      await harness.raw('/plain?name=zoe&user=zoe');
      await harness.raw('/plain?name=ann&user=ann');
      await harness.session('zoe').join(group, { meta });
      await harness.session('ann').join(group, { meta: { name: 'ann' } });
      await until(() => seen.members().length === 2, 'both join');
      await harness.session('zoe').close();
      await until(
        () => seen.members().join() === 'ann',
        'zoe leaves every watcher',
        GRACE + TTL + 2000,
      );
      expect(await presence.list(group)).toHaveLength(1);
      expect(await presence.count(group)).toBe(1);
    },
  );

  it.each([
    ['plain names', 'Bea'],
    ["one's name cut in an emoji", 'Bea 🎉'.slice(0, 5)],
  ])(
    'an instance that dies with two members in a group: both leave, with %s',
    async (_what, name) => {
      const group = `crash-${randomUUID()}`;
      const presence = harness.get(Presence);
      const seen = watch(presence, group);
      stops.push(() => seen.subscription.unsubscribe());
      // the dead instance: it said its members were alive until `expiresAt`, in one refresh
      const dead = new RedisBackplane(
        new Redis(REDIS_URL, { lazyConnect: true }),
        {
          prefix,
        },
      );
      await dead.start({
        publication: () => undefined,
        presence: () => undefined,
        reconnected: () => undefined,
      });
      stops.push(() => dead.close());
      const expiresAt = Date.now() + 300;
      await dead.presenceJoin(
        group,
        {
          session: 'a-session',
          key: 'amy',
          userId: 'amy',
          meta: { name: 'amy' },
        },
        expiresAt,
      );
      await dead.presenceJoin(
        group,
        {
          session: 'b-session',
          key: 'bea',
          userId: 'bea',
          meta: { name },
        },
        expiresAt,
      );
      await until(() => seen.members().length === 2, 'both are listed');
      await until(
        () => seen.members().length === 0,
        'both leave the watcher',
        300 + TTL + TTL / 3 + 2000,
      );
    },
  );

  it('count() agrees with list() once a dead instance’s member has left the list', async () => {
    const group = `count-${randomUUID()}`;
    const presence = harness.get(Presence);
    const dead = new RedisBackplane(
      new Redis(REDIS_URL, { lazyConnect: true }),
      {
        prefix,
      },
    );
    await dead.start({
      publication: () => undefined,
      presence: () => undefined,
      reconnected: () => undefined,
    });
    stops.push(() => dead.close());
    await dead.presenceJoin(
      group,
      { session: 's1', key: 'kim', userId: 'kim', meta: {} },
      Date.now() + 200,
    );
    expect(await presence.count(group)).toBe(1);
    // its list is empty after the TTL; its count should follow within a third of it
    await until(
      async () => (await presence.list(group)).length === 0,
      'kim leaves the list',
    );
    await until(
      async () => (await presence.count(group)) === 0,
      'count() follows list()',
      TTL / 3 + 2000,
    );
  });

  it('a watcher that unsubscribes before the first list arrived leaves no subscription and no timer', async () => {
    const group = `watch-${randomUUID()}`;
    const presence = harness.get(Presence);
    const events: PresenceEvent[] = [];
    for (let n = 0; n < 50; n++) {
      presence
        .watch(group)
        .subscribe((e) => events.push(e))
        .unsubscribe();
    }
    // a round trip: the lists asked for have been answered
    await presence.list(group);
    await admin.ping();
    expect(events).toEqual([]);
    expect(await shardChannels(admin, `${prefix}:{${group}`)).toEqual([]);
  });
});

describe('presence when Redis restarts empty', () => {
  let redis: PrivateRedis;
  let harness: GroupHarness;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    harness = await harnessOn(redis.url, 'restart');
  });

  afterAll(async () => {
    await harness.close();
    await redis.down();
  });

  it('a watcher hears the leave of a member that left while Redis was away', async () => {
    const group = 'lobby';
    const presence = harness.get(Presence);
    const seen = watch(presence, group);
    try {
      await harness.raw('/plain?name=ann&user=ann');
      await harness.raw('/plain?name=bob&user=bob');
      await harness.session('ann').join(group, { meta: {} });
      await harness.session('bob').join(group, { meta: {} });
      await until(() => seen.members().length === 2, 'both join');
      await redis.down();
      await harness.session('bob').close();
      await redis.up();
      // the refresh adds ann again; bob, gone, should be said to have left
      await until(
        () => seen.members().join() === 'ann',
        'the watcher converges on ann alone',
        GRACE + TTL * 3 + 3000,
      );
    } finally {
      seen.subscription.unsubscribe();
    }
  });
});
