// Group names a careless app or a hostile peer can produce (a name often comes from a message),
// on one instance: every name join() accepts must work for reliable members, and positions of
// long names must not keep a client from reconnecting.
import { Broadcaster } from 'nestjs-ws-endpoints';
import { FaultProxy } from './utils/fault-proxy';
import { GroupHarness } from './utils/group-harness';
import { until } from './utils/until';
import { within } from './utils/within';

describe('group names on one instance', () => {
  let harness: GroupHarness;
  let proxy: FaultProxy | undefined;

  beforeAll(async () => {
    harness = await GroupHarness.start();
  });

  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await harness.reset();
  });

  afterAll(() => harness.close());

  // JSON.parse('"\\ud800"') gives one: a name taken from a peer's message can have it
  const LONE = 'room-\ud800';

  it('join() on a reliable session either refuses a name with a lone surrogate with a TypeError, or resolves', async () => {
    await harness.raw('/reliable?name=r&user=r');
    const session = harness.session('r');
    let outcome: string;
    try {
      const joined = await session.join(LONE);
      outcome = `resolved ${JSON.stringify(joined)}`;
    } catch (error) {
      outcome = `${(error as Error).name}${error instanceof TypeError ? '' : ` (${(error as Error).message})`}`;
    }
    expect(['TypeError', 'resolved {"recovered":true,"missed":0}']).toContain(
      outcome,
    );
  });

  it('a broadcast to a group whose name has a lone surrogate never throws, and reaches its plain members', async () => {
    await harness.raw('/reliable?name=r&user=r');
    const plain = await harness.raw('/plain?name=p&user=p');
    try {
      void harness
        .session('r')
        .join(LONE)
        .catch(() => undefined);
    } catch {
      // refused at the call: then there is nothing more to see
      return;
    }
    await harness.session('p').join(LONE);
    const broadcaster = harness.get(Broadcaster);
    let sent: unknown;
    expect(() => {
      sent = broadcaster.to(LONE).send('hello');
    }).not.toThrow();
    await expect(sent).resolves.toBe(true);
    await until(() => plain.got.includes('hello'), 'the plain member gets it');
  });

  it.each([
    ['a space', 'a b'],
    ['braces', '{x}'],
    ['a leading closing brace', '}y'],
    ['a percent escape', '%41%zz'],
    ['a newline', 'new\nline'],
    ['tildes', 'a~b~c'],
    ['URL delimiters', '&=?#/+'],
    ['non-ASCII and an emoji', 'über €😀'],
    ['128 characters', 'n'.repeat(128)],
  ])(
    'a reliable client gets a group named with %s with its name, and recovers it in a new session',
    async (_what, group) => {
      proxy = await FaultProxy.start({ port: harness.port });
      const member = await harness.client(
        '/brief?name=m&user=m',
        undefined,
        proxy.url(''),
      );
      const first = harness.session('m');
      await first.join(group);
      const broadcaster = harness.get(Broadcaster);
      await broadcaster.to(group).send('one');
      await until(() => member.got.length === 1, 'the first message');
      expect(member.got[0]).toMatchObject({
        text: 'one',
        group,
        binary: false,
      });
      // the session ends while the client is away
      proxy.refuse();
      proxy.cutAll();
      await first.closed;
      await broadcaster.to(group).send('two');
      proxy.allow();
      await until(() => harness.sessions('m').length === 2, 'a new session');
      const joined = await harness.session('m').join(group);
      expect(joined).toEqual({ recovered: true, missed: 1 });
      await until(() => member.got.length === 2, 'the recovered message');
      expect(member.got[1]).toMatchObject({
        text: 'two',
        group,
        binary: false,
      });
      expect(member.lost).toEqual([]);
    },
  );

  it('a client in 32 groups with long non-ASCII names resumes its session after a drop', async () => {
    proxy = await FaultProxy.start({ port: harness.port });
    const member = await harness.client(
      '/reliable?name=many&user=many',
      undefined,
      proxy.url(''),
    );
    const session = harness.session('many');
    const groups = Array.from(
      { length: 32 },
      (_, i) => `${String(i).padStart(2, '0')}${'€'.repeat(126)}`,
    );
    for (const group of groups) await session.join(group);
    const broadcaster = harness.get(Broadcaster);
    for (const group of groups)
      await broadcaster.to(group).send(group.slice(0, 2));
    await until(() => member.got.length === 32, 'a message of each group');
    proxy.cutAll();
    await within(
      until(
        () => session.resumed && member.client.state === 'open',
        'the resume',
        10_000,
      ),
      10_000,
      () => `the client never resumed (client state ${member.client.state})`,
    );
  });

  /** A reliable client through a proxy on the short-window endpoint, and a way to end its session. */
  async function briefMember(name: string) {
    proxy = await FaultProxy.start({ port: harness.port });
    const member = await harness.client(
      `/brief?name=${name}&user=${name}`,
      undefined,
      proxy.url(''),
    );
    const outlive = async () => {
      const session = harness.session(name);
      proxy!.refuse();
      proxy!.cutAll();
      await session.closed;
    };
    const back = async () => {
      const before = harness.sessions(name).length;
      proxy!.allow();
      await until(
        () => harness.sessions(name).length > before,
        `${name} has a new session`,
      );
      return harness.session(name);
    };
    return { member, outlive, back };
  }

  it('a sender that left itself out of its broadcast (except(socket)) does not get it when its client recovers the room in a new session', async () => {
    const { member, outlive, back } = await briefMember('s');
    await harness.session('s').join('chat');
    const broadcaster = harness.get(Broadcaster);
    await broadcaster.to('chat').send('before');
    await until(() => member.got.length === 1, 'the first');
    // it says something: everyone but itself gets it (its page shows it already)
    await broadcaster.to('chat').except(harness.session('s')).send('mine');
    await outlive();
    await broadcaster.to('chat').send('theirs');
    const joined = await (await back()).join('chat');
    expect(joined.recovered).toBe(true);
    await until(() => member.texts().includes('theirs'), 'the recovery');
    expect(member.texts()).toEqual(['before', 'theirs']);
  });
});
