// RedisBackplane on its own, against a private redis-server that the test stops and starts:
// what it holds while Redis is away, and what it reports lost.
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import {
  type Publication,
  RedisBackplane,
  type BackplaneReceiver,
} from 'nestjs-ws-endpoints';
import { CapturedLogs } from './utils/test-app';
import { PrivateRedis } from './utils/redis';
import { until } from './utils/until';

/** A backplane on `url` and what it receives. */
async function backplaneOn(
  url: string,
  outage?: { messages?: number; maxAge?: number },
) {
  const got: string[] = [];
  const receiver: BackplaneReceiver = {
    publication: (publication) =>
      got.push(
        `${publication.delivered ? 'noted' : 'got'} ${String(publication.payload)}`,
      ),
    presence: () => undefined,
    reconnected: () => undefined,
  };
  const backplane = new RedisBackplane(new Redis(url, { lazyConnect: true }), {
    prefix: 'held',
    outage,
  });
  await backplane.start(receiver);
  await backplane.subscribe('g');
  return { backplane, got };
}

const to = (text: string): Publication => ({
  groups: ['g'],
  payload: text,
  binary: false,
});

describe('RedisBackplane while Redis is away', () => {
  let redis: PrivateRedis;
  const logs = new CapturedLogs();
  const closing: RedisBackplane[] = [];

  beforeAll(() => Logger.overrideLogger(logs));

  beforeEach(async () => {
    redis = await PrivateRedis.start();
  });

  afterEach(async () => {
    await Promise.all(closing.splice(0).map((backplane) => backplane.close()));
    await redis.down();
  });

  it('hands its own instance each publication at once, holds it, and publishes it once Redis is back; past its bounds one is lost, said once', async () => {
    const a = await backplaneOn(redis.url, { messages: 2 });
    const b = await backplaneOn(redis.url);
    closing.push(a.backplane, b.backplane);
    await expect(a.backplane.publish(to('up'))).resolves.toBe(true);
    await until(() => b.got.length === 1 && a.got.length === 1, 'both get it');
    await redis.down();
    const held = [
      a.backplane.publish(to('held-1')),
      a.backplane.publish(to('held-2')),
    ];
    const lost = [
      a.backplane.publish(to('lost-3')),
      a.backplane.publish(to('lost-4')),
    ];
    await expect(Promise.all(lost)).resolves.toEqual([false, false]);
    expect(logs.find('warn', 'Broadcasts are being lost')).toHaveLength(1);
    // its own instance got each at once, the lost ones too
    expect(a.got).toEqual([
      'got up',
      'got held-1',
      'got held-2',
      'got lost-3',
      'got lost-4',
    ]);
    await redis.up();
    await expect(Promise.all(held)).resolves.toEqual([true, true]);
    // Redis came back empty: a new epoch, which holds them in order (the other instance's
    // subscription may come back after they were published: its GroupHub reads them from here)
    const c = await backplaneOn(redis.url); // another instance, connected now
    closing.push(c.backplane);
    const { epoch, offset } = await c.backplane.position('g');
    expect(offset).toBe(2);
    const theirs = await c.backplane.history('g', { offset: 0, epoch });
    expect(theirs!.publications.map((p) => [p.payload, p.delivered])).toEqual([
      ['held-1', undefined],
      ['held-2', undefined],
    ]);
    // to the instance that held them they are marked as handed out already
    const own = await a.backplane.history('g', { offset: 0, epoch });
    expect(own!.publications.map((p) => p.delivered)).toEqual([true, true]);
  });

  it('gives up, as lost, what waited longer than maxAge', async () => {
    const a = await backplaneOn(redis.url, { maxAge: 1 });
    closing.push(a.backplane);
    await redis.down();
    const old = a.backplane.publish(to('old'));
    await redis.up();
    await expect(old).resolves.toBe(false);
  });
});
