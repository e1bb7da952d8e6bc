// The README: "It also works on a Redis Cluster: every key and the channel of a group share its
// hash tag (`ws:{<group>}:…`)". A Redis Cluster of one node checks what a cluster checks (the keys
// of a command share one slot); two instances on it, with groups named as apps name them.
import { Redis } from 'ioredis';
import { Broadcaster, Presence, RedisBackplane } from 'nestjs-ws-endpoints';
import { GroupHarness } from './utils/group-harness';
import { OneNodeCluster } from './utils/redis-cluster';
import { until } from './utils/until';
import { within } from './utils/within';

describe('groups on a Redis Cluster', () => {
  let cluster: OneNodeCluster;
  let a: GroupHarness;
  let b: GroupHarness;

  beforeAll(async () => {
    cluster = await OneNodeCluster.start();
  });

  // instances of each test's own: what one test's refused publication does to its instance
  // (test/redis-publish-faults.e2e-spec.ts) must not decide the next test
  beforeEach(async () => {
    const start = () =>
      GroupHarness.start({
        heartbeat: false,
        backplane: new RedisBackplane(
          new Redis(cluster.url, { lazyConnect: true }),
        ),
      });
    a = await start();
    b = await start();
  });

  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  afterAll(async () => {
    await cluster.stop();
  });

  it.each([
    ['a plain name', 'lobby'],
    ['braces inside', 'team{42}'],
    ['a leading closing brace', '}lobby'],
    ['empty braces first', '{}lobby'],
  ])(
    'a group named with %s: its messages reach the other instance, and its presence lists the member',
    async (_what, group) => {
      const member = await b.raw('/plain?name=m&user=mia');
      await b.session('m').join(group, { meta: { name: 'mia' } });
      await expect(
        within(a.get(Broadcaster).to(group).send('hi'), 3000, 'send() settles'),
      ).resolves.toBe(true);
      await until(
        () => member.got.includes('hi'),
        'the other instance gets it',
        3000,
      );
      expect(
        await within(a.get(Presence).list(group), 3000, 'the list'),
      ).toEqual([{ key: 'mia', userId: 'mia', meta: { name: 'mia' } }]);
    },
  );

  it('a publication to a group whose name the cluster refuses does not hold back the next ones, to other groups', async () => {
    const member = await b.raw('/plain?name=m&user=mia');
    await b.session('m').join('lobby');
    let settled = false;
    void a
      .get(Broadcaster)
      .to('}refused')
      .send('refused')
      .then(() => (settled = true));
    // the refusal has come back: the send settled, or the backplane said so (Nest's static
    // logger is the last app's)
    await until(
      () =>
        settled ||
        [a, b].some((app) => app.logs.find('warn', 'CROSSSLOT').length > 0),
      'the refusal',
    );
    await expect(
      within(
        a.get(Broadcaster).to('lobby').send('next'),
        3000,
        'send() settles',
      ),
    ).resolves.toBe(true);
    await until(() => member.got.includes('next'), 'the lobby message', 3000);
  });
});
