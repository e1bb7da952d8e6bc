// RedisBackplane's publications when Redis answers with an error while the connection stays up
// (maxmemory reached, a failover to a replica), when Redis stays away past `outage.maxAge`, after
// close(), and when the other instance's subscription is being made again: the README promises
// that send() resolves true or false (never hangs), and that what is published reaches the
// other instances once Redis takes it.
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import {
  type BackplaneReceiver,
  Broadcaster,
  type Publication,
  RedisBackplane,
} from 'nestjs-ws-endpoints';
import { CapturedLogs } from './utils/test-app';
import { PrivateRedis } from './utils/redis';
import { GroupHarness } from './utils/group-harness';
import { until } from './utils/until';
import { within } from './utils/within';

/** A backplane on `url`, subscribed to group `g`, and the payloads it receives. */
async function backplaneOn(
  url: string,
  outage?: { messages?: number; maxAge?: number },
) {
  const got: string[] = [];
  const receiver: BackplaneReceiver = {
    publication: (publication) => got.push(String(publication.payload)),
    presence: () => undefined,
    reconnected: () => undefined,
  };
  const backplane = new RedisBackplane(new Redis(url, { lazyConnect: true }), {
    prefix: 'faults',
    outage,
  });
  await backplane.start(receiver);
  await backplane.subscribe('g');
  return { backplane, got };
}

const toGroup = (text: string, group = 'g'): Publication => ({
  groups: [group],
  payload: text,
  binary: false,
});

/** Whether `promise` settled within `ms`, and with what. */
function settledWithin<T>(promise: Promise<T>, ms: number) {
  return within(promise, ms, `still pending after ${ms} ms`).then(
    (value) => ({ settled: true as const, value }),
    (error: Error) => ({ settled: false as const, error: error.message }),
  );
}

describe('RedisBackplane publications when Redis refuses or is away', () => {
  let redis: PrivateRedis;
  let admin: Redis;
  const logs = new CapturedLogs();
  const closing: RedisBackplane[] = [];

  beforeAll(() => Logger.overrideLogger(logs));

  beforeEach(async () => {
    redis = await PrivateRedis.start();
    admin = new Redis(redis.url);
  });

  afterEach(async () => {
    await Promise.all(closing.splice(0).map((backplane) => backplane.close()));
    admin.disconnect();
    await redis.down();
  });

  it('a publication Redis refused (maxmemory) does not hold back those made once Redis takes writes again', async () => {
    const a = await backplaneOn(redis.url);
    const b = await backplaneOn(redis.url);
    closing.push(a.backplane, b.backplane);
    await expect(a.backplane.publish(toGroup('before'))).resolves.toBe(true);
    await until(() => b.got.includes('before'), 'b gets the first');
    await admin.config('SET', 'maxmemory', '1');
    const refused = a.backplane.publish(toGroup('refused'));
    // the refusal has come back once a command sent after it is answered
    await admin.ping();
    await admin.config('SET', 'maxmemory', '0');
    await expect(admin.set('probe', '1')).resolves.toBe('OK');
    // Redis takes writes again, on the same connection: a new publication goes through
    const after = a.backplane.publish(toGroup('after'));
    expect(await settledWithin(after, 3000)).toEqual({
      settled: true,
      value: true,
    });
    await until(() => b.got.includes('after'), 'b gets the next', 3000);
    // the refused one is either published late or reported lost, but settled
    expect((await settledWithin(refused, 1000)).settled).toBe(true);
  });

  it('a publication held while Redis is away resolves false once it waited maxAge, without waiting for another publication', async () => {
    const a = await backplaneOn(redis.url, { maxAge: 200 });
    closing.push(a.backplane);
    await redis.down();
    const held = a.backplane.publish(toGroup('held'));
    // Redis stays away; nothing else is published
    expect(await settledWithin(held, 3000)).toEqual({
      settled: true,
      value: false,
    });
  });

  it('a publication after close() resolves false', async () => {
    const a = await backplaneOn(redis.url);
    await a.backplane.close();
    expect(
      await settledWithin(a.backplane.publish(toGroup('late')), 2000),
    ).toEqual({
      settled: true,
      value: false,
    });
  });
});

describe('toUser() and all() across two instances when Redis connections come and go', () => {
  let redis: PrivateRedis;
  let admin: Redis;
  const harnesses: GroupHarness[] = [];

  /** An instance on the private Redis; `retry` is its connections' reconnection delay. */
  async function instance(retry?: number) {
    const harness = await GroupHarness.start({
      heartbeat: false,
      backplane: new RedisBackplane(
        new Redis(redis.url, {
          lazyConnect: true,
          ...(retry === undefined ? {} : { retryStrategy: () => retry }),
        }),
        { prefix: 'users' },
      ),
    });
    harnesses.push(harness);
    return harness;
  }

  beforeEach(async () => {
    redis = await PrivateRedis.start();
    admin = new Redis(redis.url);
  });

  afterEach(async () => {
    await Promise.all(harnesses.splice(0).map((harness) => harness.close()));
    admin.disconnect();
    await redis.down();
  });

  it('reach a session on an instance whose subscription connection was dropped and made again', async () => {
    const a = await instance();
    const b = await instance();
    const dana = await b.raw('/plain?name=d&user=dana');
    await a.get(Broadcaster).toUser('dana').send('first');
    await until(() => dana.got.includes('first'), 'dana gets the first');
    // every subscriber connection drops (a proxy, a network blip); ioredis takes ≥ 50 ms to
    // connect again, while a's command connection is up
    await admin.client('KILL', 'TYPE', 'pubsub');
    await expect(
      a.get(Broadcaster).toUser('dana').send('to-dana'),
    ).resolves.toBe(true);
    await expect(a.get(Broadcaster).all().send('to-all')).resolves.toBe(true);
    await until(
      () => dana.got.includes('to-dana') && dana.got.includes('to-all'),
      `dana gets both (got ${dana.got.join()})`,
      8000,
    );
  });

  it('a toUser publication held while Redis was away reaches a session on an instance that reconnects later than the publisher', async () => {
    const a = await instance(50);
    // instances reconnect at moments of their own: this one every 1.5 s
    const b = await instance(1500);
    const dana = await b.raw('/plain?name=d&user=dana');
    await redis.down();
    await until(
      () => [a, b].some((h) => h.logs.find('warn', 'Redis is away').length > 0),
      'the instances notice',
    );
    const held = a.get(Broadcaster).toUser('dana').send('while-away');
    await redis.up();
    await expect(held).resolves.toBe(true);
    await until(
      () => dana.got.includes('while-away'),
      'dana gets the held publication once her instance is back',
      8000,
    );
  });
});
