// Broadcast audiences and group membership on one instance (the in-memory backplane), driven as
// a careless handler would: an empty list of groups, a huge except(), binary payloads, a
// join/leave loop, 10,000 groups, a join after the session ended or while it waits for its client.
import { Broadcaster, WsMetrics } from 'nestjs-ws-endpoints';
import { FaultProxy } from './utils/fault-proxy';
import { GroupHarness } from './utils/group-harness';
import { until } from './utils/until';

describe('broadcast audiences and membership on one instance', () => {
  let harness: GroupHarness;
  let broadcaster: Broadcaster;
  let proxy: FaultProxy | undefined;

  beforeAll(async () => {
    harness = await GroupHarness.start({ heartbeat: false });
    broadcaster = harness.get(Broadcaster);
  });

  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await harness.reset();
  });

  afterAll(() => harness.close());

  it('to() with an empty list of groups reaches no one, as its count says', async () => {
    const outsider = await harness.raw('/plain?name=out&user=out');
    const member = await harness.raw('/plain?name=in&user=in');
    await harness.session('in').join('room');
    // a user's rooms, which may be none: to(...rooms)
    const rooms: string[] = [];
    expect(broadcaster.to(...rooms).count).toBe(0);
    await broadcaster.to(...rooms).send('to no room');
    await broadcaster.to('room').send('to the room');
    await until(() => member.got.length >= 1, 'the room message');
    expect(member.got).toEqual(['to the room']);
    expect(outsider.got).toEqual([]);
  });

  it('except() with 10,000 ids leaves out exactly those, and counts the rest', async () => {
    const kept = await harness.raw('/plain?name=kept&user=kept');
    const skipped = await harness.raw('/plain?name=skipped&user=skipped');
    await harness.session('kept').join('g');
    await harness.session('skipped').join('g');
    const ids = Array.from({ length: 10_000 }, (_, i) => `id-${i}`);
    ids.push(harness.session('skipped').id);
    const audience = broadcaster.to('g').except(...ids);
    expect(audience.count).toBe(1);
    await expect(audience.send('x')).resolves.toBe(true);
    await until(() => kept.got.length === 1, 'delivery');
    expect(skipped.got).toEqual([]);
  });

  it('a binary broadcast reaches plain members and reliable clients as the same bytes, binary', async () => {
    const plain = await harness.raw('/plain?name=p&user=p');
    const reliable = await harness.client('/reliable?name=r&user=r');
    await harness.session('p').join('bin');
    await harness.session('r').join('bin');
    const bytes = Buffer.from([0, 10, 255, 32, 10, 0x7b]);
    await broadcaster.to('bin').send(new Uint8Array(bytes));
    await broadcaster.to('bin', 'other').send(bytes);
    await until(
      () => plain.binary.length === 2 && reliable.got.length === 2,
      'both get both',
    );
    expect(plain.binary).toEqual([bytes, bytes]);
    expect(
      reliable.got.map((m) => [m.binary, Buffer.from(m.data as Uint8Array)]),
    ).toEqual([
      [true, bytes],
      [true, bytes],
    ]);
    expect(reliable.got[0].group).toBe('bin');
  });

  it('a session that joins and leaves a group 1,000 times in a row is in it after a last join, and gets each message once', async () => {
    const member = await harness.raw('/plain?name=loop&user=loop');
    const session = harness.session('loop');
    for (let n = 0; n < 1000; n++) {
      void session.join('loop', { meta: { n } });
      session.leave('loop');
    }
    await session.join('loop', { meta: { n: 'last' } });
    expect(broadcaster.to('loop').count).toBe(1);
    await broadcaster.to('loop').send('once');
    await until(() => member.got.length === 1, 'delivery');
    session.leave('loop');
    await broadcaster.to('loop').send('after leaving');
    await broadcaster.to('loop', 'x').send('after leaving, to two');
    await broadcaster.all().send('to all');
    await until(() => member.got.length === 2, 'the message to all');
    expect(member.got).toEqual(['once', 'to all']);
  });

  it('a session in 10,000 groups gets a message of any one of them, and leaves them all when it ends', async () => {
    await harness.raw('/plain?name=big&user=big');
    const member = await harness.raw('/plain?name=other&user=other');
    const session = harness.session('big');
    const groups = Array.from({ length: 10_000 }, (_, i) => `g${i}`);
    await Promise.all(groups.map((group) => session.join(group)));
    await harness.session('other').join('g9999');
    expect(session.groups.size).toBe(10_000);
    await session.close();
    expect(session.groups.size).toBe(0);
    expect(broadcaster.to('g0').count).toBe(0);
    expect(broadcaster.to('g9999').count).toBe(1);
    await broadcaster.to('g9999').send('still');
    await until(() => member.got.length === 1, 'the other member');
  });

  it('join() after the session ended makes no membership and resolves', async () => {
    await harness.raw('/plain?name=late&user=late');
    const session = harness.session('late');
    await session.close();
    await expect(session.join('late-room', { meta: {} })).resolves.toEqual({
      recovered: true,
      missed: 0,
    });
    expect(session.groups.size).toBe(0);
    expect(broadcaster.to('late-room').count).toBe(0);
  });

  it('a reliable session that joins a group while its client is away gets its messages on resume, once, in order', async () => {
    proxy = await FaultProxy.start({ port: harness.port });
    const member = await harness.client(
      '/reliable?name=away&user=away',
      undefined,
      proxy.url(''),
    );
    const session = harness.session('away');
    await session.join('first');
    await broadcaster.to('first').send('1');
    await until(() => member.got.length === 1, 'the first');
    proxy.refuse();
    proxy.cutAll();
    await until(() => session.state === 'reconnecting', 'the drop');
    const joined = session.join('second');
    for (let n = 2; n <= 50; n++) {
      await broadcaster.to(n % 2 ? 'first' : 'second').send(String(n));
    }
    await expect(joined).resolves.toEqual({ recovered: true, missed: 0 });
    proxy.allow();
    await until(() => member.got.length === 50, 'every message', 10_000);
    expect(member.got.map((m) => m.text)).toEqual(
      Array.from({ length: 50 }, (_, i) => String(i + 1)),
    );
    expect(member.got.map((m) => m.group)).toEqual(
      Array.from({ length: 50 }, (_, i) =>
        i === 0 || i % 2 === 0 ? 'first' : 'second',
      ),
    );
    expect(session.resumed).toBe(true);
  });

  it('snapshot() counts each send() as one broadcast and each delivery once', async () => {
    const metrics = harness.get(WsMetrics);
    const before = metrics.snapshot();
    const a = await harness.raw('/plain?name=a&user=a');
    await harness.raw('/plain?name=b&user=b');
    await harness.session('a').join('m');
    await harness.session('b').join('m');
    await broadcaster.to('m').send('one');
    await broadcaster.to('m').except(harness.session('b')).send('two');
    await broadcaster.to('nobody-here').send('three');
    await until(() => a.got.length === 2, 'delivery');
    const after = metrics.snapshot();
    expect(after.broadcasts - before.broadcasts).toBe(3);
    expect(after.fanout - before.fanout).toBe(3);
  });

  it.each([
    [
      'a cycle',
      () => {
        const meta: Record<string, unknown> = {};
        meta.self = meta;
        return meta;
      },
    ],
    [
      'a toJSON that throws an Error',
      () => ({
        toJSON: () => {
          throw new Error('no');
        },
      }),
    ],
    [
      'a toJSON that throws a string',
      () => ({
        toJSON: () => {
          throw 'no';
        },
      }),
    ],
    [
      'a toJSON that throws undefined',
      () => ({
        toJSON: () => {
          throw undefined;
        },
      }),
    ],
  ])(
    'join() with meta that has %s throws a TypeError at the call, and joins nothing',
    async (_what, make) => {
      await harness.raw('/plain?name=meta&user=meta');
      const session = harness.session('meta');
      let thrown: unknown = 'nothing';
      try {
        void session.join('meta-room', { meta: make() });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(TypeError);
      expect(session.groups.size).toBe(0);
    },
  );
});
