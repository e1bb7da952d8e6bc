// The README: "While Redis is away each instance goes on serving its own sessions: a message
// published on an instance reaches that instance's members at once, and is held ... and
// published when Redis is back"; "A publication whose command was sent as the connection broke
// may be published twice (at least once)"; send() "never rejects" and resolves true or false.
// Redis goes away here as it does on a network: silently (a partition, a host that lost power),
// or with a command on the wire when the connection breaks.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { Broadcaster, RedisBackplane } from 'nestjs-ws-endpoints';
import { FaultProxy } from './utils/fault-proxy';
import { GroupHarness } from './utils/group-harness';
import { describeWithRedis, REDIS_URL } from './utils/redis';
import { until } from './utils/until';
import { within } from './utils/within';

describeWithRedis('an instance partitioned from Redis', () => {
  let proxy: FaultProxy;
  let a: GroupHarness;
  let b: GroupHarness;

  beforeEach(async () => {
    proxy = await FaultProxy.start({
      port: Number(new URL(REDIS_URL).port) || 6379,
    });
    const prefix = `partition:${randomUUID()}`;
    const start = (url: string) =>
      GroupHarness.start({
        heartbeat: false,
        backplane: new RedisBackplane(new Redis(url, { lazyConnect: true }), {
          prefix,
        }),
      });
    a = await start(`redis://127.0.0.1:${proxy.port}`);
    b = await start(REDIS_URL);
  });

  afterEach(async () => {
    await proxy.close();
    await Promise.all([a.close(), b.close()]);
  });

  it('goes on handing its own members what it publishes when Redis stops answering (no reset, no close)', async () => {
    const local = await a.raw('/plain?name=local&user=local');
    await a.session('local').join('room');
    await a.get(Broadcaster).to('room').send('before');
    await until(() => local.got.length === 1, 'the first message');
    proxy.blackhole();
    const during = a.get(Broadcaster).to('room').send('during');
    await until(
      () => local.got.includes('during'),
      'the local member gets it at once',
      3000,
    );
    void during;
  });

  it('a publication whose command was on the wire when the connection broke reaches the local members, then the others, and its send() settles', async () => {
    const local = await a.raw('/plain?name=local&user=local');
    const far = await b.raw('/plain?name=far&user=far');
    await a.session('local').join('room');
    await b.session('far').join('room');
    await a.get(Broadcaster).to('room').send('before');
    await until(
      () => local.got.length === 1 && far.got.length === 1,
      'the first message',
    );
    // the command goes out and is held on the way; then the connection breaks
    proxy.stall();
    const sent = a.get(Broadcaster).to('room').send('in-flight');
    await until(
      () => proxy.stats.some((c) => c.up.held > 0),
      'the command is on the wire',
    );
    proxy.cutAll();
    proxy.resume();
    await expect(within(sent, 5000, 'send() settles')).resolves.toBe(true);
    await until(
      () => local.got.includes('in-flight'),
      'the local member gets it',
    );
    await until(
      () => far.got.includes('in-flight'),
      'the other instance gets it',
    );
  });
});
