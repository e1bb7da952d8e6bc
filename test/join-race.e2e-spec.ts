// The README: "`await socket.join(group)` resolves once this instance is subscribed: from then on
// the session gets every message sent to the group from any instance." Two instances on the
// shared Redis, the first through a proxy that adds latency to one of its two Redis connections,
// as a busy subscriber connection (a backlog of other groups' messages) or a busy command
// connection (presence refreshes, history reads) does.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  Broadcaster,
  Presence,
  type PresenceEvent,
  RedisBackplane,
} from 'nestjs-ws-endpoints';
import { GroupHarness } from './utils/group-harness';
import { LaggingRedisProxy } from './utils/lagging-redis-proxy';
import { describeWithRedis, REDIS_URL } from './utils/redis';
import { until } from './utils/until';

describeWithRedis('a message sent right after join() resolved', () => {
  let proxy: LaggingRedisProxy;
  let a: GroupHarness;
  let b: GroupHarness;

  beforeAll(async () => {
    proxy = await LaggingRedisProxy.start(
      Number(new URL(REDIS_URL).port) || 6379,
    );
    const prefix = `join-race:${randomUUID()}`;
    const start = (url: string) =>
      GroupHarness.start({
        heartbeat: false,
        backplane: new RedisBackplane(new Redis(url, { lazyConnect: true }), {
          prefix,
        }),
      });
    a = await start(proxy.url);
    b = await start(REDIS_URL);
  });

  afterEach(async () => {
    proxy.subscriberDown = proxy.commandsUp = proxy.subscriberUp = 0;
    await Promise.all([a.reset(), b.reset()]);
  });

  afterAll(async () => {
    await Promise.all([a.close(), b.close()]);
    await proxy.close();
  });

  it.each([
    ['no added latency', 0, 0],
    ['a busy command connection', 0, 100],
    ['a busy subscriber connection', 300, 0],
    ['both', 300, 100],
  ])(
    'reaches a member of a group new to its instance, with %s',
    async (_what, subscriberDown, commandsUp) => {
      const member = await a.raw('/plain?name=m&user=m');
      const group = `fresh-${randomUUID()}`;
      proxy.subscriberDown = subscriberDown;
      proxy.commandsUp = commandsUp;
      await a.session('m').join(group);
      await b.get(Broadcaster).to(group).send('first');
      await b.get(Broadcaster).to(group).send('second');
      await until(
        () => member.got.length === 2,
        `both messages (got ${JSON.stringify(member.got)})`,
        8000,
      ).catch(() => {
        throw new Error(`the member got ${JSON.stringify(member.got)}`);
      });
      expect(member.got).toEqual(['first', 'second']);
    },
  );

  it.each([
    ['no added latency', 0],
    ['a slow subscriber connection', 300],
  ])(
    'a presence watch started on an instance new to the group sees a member that joins elsewhere meanwhile, with %s',
    async (_what, subscriberUp) => {
      const group = `watched-${randomUUID()}`;
      proxy.subscriberUp = subscriberUp;
      const events: PresenceEvent[] = [];
      const watching = a
        .get(Presence)
        .watch(group)
        .subscribe((event) => events.push(event));
      try {
        await until(() => events.length === 1, 'the first list');
        await b.raw('/plain?name=bob&user=bob');
        await b.session('bob').join(group, { meta: { name: 'bob' } });
        // the list and its diffs are what the README promises to converge
        await until(
          () =>
            events.some((e) =>
              (e.type === 'state' ? e.members : e.joins).some(
                (m) => m.key === 'bob',
              ),
            ),
          `the watcher hears bob (events ${JSON.stringify(events)})`,
          5000,
        );
      } finally {
        watching.unsubscribe();
      }
    },
  );
});
