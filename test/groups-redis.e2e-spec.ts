// Groups across two instances (two apps in this process) on the shared Redis: subscription
// races, join/leave churn, 10,000 groups, binary payloads, and what is left in Redis afterwards.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  Broadcaster,
  Presence,
  RedisBackplane,
  WsMetrics,
} from 'nestjs-ws-endpoints';
import { FaultProxy } from './utils/fault-proxy';
import { GroupHarness, shardChannels } from './utils/group-harness';
import { describeWithRedis, PrivateRedis, REDIS_URL } from './utils/redis';
import { within } from './utils/within';
import { until } from './utils/until';

describeWithRedis('groups across two instances on Redis', () => {
  let a: GroupHarness;
  let b: GroupHarness;
  let prefix: string;
  let admin: Redis;

  beforeAll(async () => {
    prefix = `groups-attack:${randomUUID()}`;
    const start = () =>
      GroupHarness.start({
        heartbeat: false,
        presence: { grace: 100, ttl: 900 },
        backplane: new RedisBackplane(
          new Redis(REDIS_URL, { lazyConnect: true }),
          { prefix },
        ),
      });
    a = await start();
    b = await start();
    admin = new Redis(REDIS_URL);
  });

  afterEach(async () => {
    await Promise.all([a.reset(), b.reset()]);
  });

  afterAll(async () => {
    await Promise.all([a.close(), b.close()]);
    admin.disconnect();
  });

  it('a member gets a message sent from the other instance right after its join() resolved, for each of 100 new groups joined at once', async () => {
    const member = await a.raw('/plain?name=racer&user=racer');
    const session = a.session('racer');
    const groups = Array.from({ length: 100 }, (_, i) => `race-${i}`);
    await Promise.all(
      groups.map((group) =>
        session
          .join(group)
          .then(() => b.get(Broadcaster).to(group).send(group)),
      ),
    );
    await until(() => member.got.length === 100, 'every message', 8000);
    expect(member.got.sort()).toEqual([...groups].sort());
  });

  it('sessions of both instances joining the same group at the same moment each get the next message once', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `m${i}`);
    const members = await Promise.all(
      names.map((name, i) =>
        (i % 2 ? a : b).raw(`/plain?name=${name}&user=${name}`),
      ),
    );
    await Promise.all(
      names.map((name, i) => (i % 2 ? a : b).session(name).join('crowd')),
    );
    await a.get(Broadcaster).to('crowd').send('hello');
    await until(
      () => members.every((m) => m.got.length >= 1),
      'everyone gets it',
      8000,
    );
    await b.get(Broadcaster).to('crowd').send('bye');
    await until(() => members.every((m) => m.got.length >= 2), 'the second');
    expect(members.map((m) => m.got)).toEqual(
      members.map(() => ['hello', 'bye']),
    );
  });

  it('a join/leave loop of 1,000 ends with the instance subscribed after a last join, its presence listed, and nothing left once the session ends', async () => {
    await a.raw('/plain?name=loop&user=loop');
    const session = a.session('loop');
    for (let n = 0; n < 1000; n++) {
      void session.join('loop', { meta: { n } });
      session.leave('loop');
    }
    await session.join('loop', { meta: { n: 'last' } });
    // (whether a message sent right now reaches it is test/join-race.e2e-spec.ts's question)
    expect(await shardChannels(admin, `${prefix}:{loop}`)).toEqual([
      `${prefix}:{loop}`,
    ]);
    expect(await b.get(Presence).list('loop')).toEqual([
      { key: 'loop', userId: 'loop', meta: { n: 'last' } },
    ]);
    await session.close();
    await until(
      async () => (await shardChannels(admin, `${prefix}:{`)).length === 0,
      'no group channel is subscribed',
    );
  });

  it('a session in 10,000 groups on Redis leaves every subscription when it ends', async () => {
    await a.raw('/plain?name=big&user=big');
    const session = a.session('big');
    const groups = Array.from({ length: 10_000 }, (_, i) => `many-${i}`);
    await Promise.all(groups.map((group) => session.join(group)));
    const subscribed = await shardChannels(admin, `${prefix}:{many-`);
    expect(subscribed).toHaveLength(10_000);
    await session.close();
    await until(
      async () => (await shardChannels(admin, `${prefix}:{many-`)).length === 0,
      'every channel is let go',
      10_000,
    );
  }, 60_000);

  it('binary broadcasts (a group, two groups, a user) reach the other instance as the same bytes', async () => {
    const plain = await b.raw('/plain?name=p&user=dana');
    const reliable = await b.client('/reliable?name=r&user=rik');
    await b.session('p').join('bin');
    await b.session('r').join('bin');
    const bytes = Buffer.from([0, 10, 0x20, 0xff, 10, 0x7b, 0x22]);
    const broadcaster = a.get(Broadcaster);
    await broadcaster.to('bin').send(bytes);
    await broadcaster.to('bin', 'nothing').send(bytes);
    await broadcaster.toUser('dana').send(bytes);
    await until(
      () => plain.binary.length === 3 && reliable.got.length === 2,
      'delivery',
    );
    expect(plain.binary).toEqual([bytes, bytes, bytes]);
    expect(reliable.got.map((m) => Buffer.from(m.data as Uint8Array))).toEqual([
      bytes,
      bytes,
    ]);
  });

  it('toUser() for a user with no session anywhere resolves true and reaches no one', async () => {
    const other = await b.raw('/plain?name=o&user=olga');
    await expect(a.get(Broadcaster).toUser('nobody').send('x')).resolves.toBe(
      true,
    );
    await a.get(Broadcaster).toUser('olga').send('y');
    await until(() => other.got.length === 1, 'olga');
    expect(other.got).toEqual(['y']);
  });

  it('presence keys are gone once the last member has left and the grace period passed', async () => {
    const group = `keys-${randomUUID()}`;
    await a.raw('/plain?name=k&user=k');
    await a.session('k').join(group, { meta: { big: 'x'.repeat(10_000) } });
    const keys = () => admin.keys(`${prefix}:{${group}}:p*`);
    await until(
      async () => (await keys()).length === 4,
      'the presence keys exist',
    );
    await a.session('k').close();
    await until(
      async () => (await keys()).length === 0,
      'the presence keys are gone',
      3000,
    );
  });

  it('snapshot().broadcasts adds up, over the instances, to the number of send() calls', async () => {
    const dana = await b.raw('/plain?name=d&user=dana');
    const sentinel = await a.raw('/plain?name=s&user=sentinel');
    await b.session('d').join('metered');
    const count = () =>
      a.get(WsMetrics).snapshot().broadcasts +
      b.get(WsMetrics).snapshot().broadcasts;
    const before = count();
    await a.get(Broadcaster).to('metered').send('1');
    await a.get(Broadcaster).toUser('dana').send('2');
    await a.get(Broadcaster).all().send('3');
    // each instance has handled all three once its sessions got the last
    await until(
      () => dana.got.length === 3 && sentinel.got.length === 1,
      'the last one, everywhere',
    );
    expect(count() - before).toBe(3);
  });

  it('a reliable member whose connection drops while the other instance sends gets every message once, in order, on resume', async () => {
    const proxy = await FaultProxy.start({ port: a.port });
    try {
      const member = await a.client(
        '/reliable?name=r&user=r',
        undefined,
        proxy.url(''),
      );
      const session = a.session('r');
      await session.join('flow');
      const broadcaster = b.get(Broadcaster);
      const sends: Array<Promise<boolean>> = [];
      for (let n = 1; n <= 100; n++) {
        sends.push(broadcaster.to('flow').send(String(n)));
        if (n === 30) {
          proxy.refuse();
          proxy.cutAll();
        }
        if (n === 70) proxy.allow();
      }
      await Promise.all(sends);
      await until(() => member.got.length >= 100, 'every message', 10_000);
      expect(member.got.map((m) => m.text)).toEqual(
        Array.from({ length: 100 }, (_, i) => String(i + 1)),
      );
      expect(a.sessions('r')).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });
});

describe('an instance shut down while Redis is away', () => {
  let redis: PrivateRedis;

  beforeAll(async () => {
    redis = await PrivateRedis.start();
  });

  afterAll(() => redis.down());

  it('app.close() settles what it held as lost, and ends', async () => {
    const harness = await GroupHarness.start({
      heartbeat: false,
      backplane: new RedisBackplane(
        new Redis(redis.url, { lazyConnect: true }),
        { prefix: 'shutdown' },
      ),
    });
    let closed = false;
    try {
      const member = await harness.raw('/plain?name=m&user=m');
      await harness.session('m').join('held', { meta: {} });
      await redis.down();
      // the backplane has noticed (a publication sent before that is
      // test/redis-partition.e2e-spec.ts's question)
      await until(
        () => harness.logs.find('warn', 'Redis is away').length > 0,
        'the backplane notices',
      );
      const held = [
        harness.get(Broadcaster).to('held').send('1'),
        harness.get(Broadcaster).toUser('m').send('2'),
        harness.get(Broadcaster).all().send('3'),
      ];
      await until(() => member.got.length === 3, 'local delivery');
      closed = true;
      await within(harness.close(), 8000, 'app.close()');
      await expect(
        within(Promise.all(held), 1000, 'the held sends'),
      ).resolves.toEqual([false, false, false]);
    } finally {
      if (!closed) await harness.close();
      await redis.up();
    }
  });
});
