// Presence, joins and group recovery on one instance (the in-memory backplane), on Express and
// Fastify; across instances over Redis it is test/cluster.e2e-spec.ts.
import { Controller, INestApplication, Param, UseGuards } from '@nestjs/common';
import WebSocket from 'ws';
import {
  Broadcaster,
  MemoryBackplane,
  Presence,
  type PresenceEvent,
  Socket,
  WebSocketContext,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
  WsMetrics,
} from 'nestjs-ws-endpoints';
import { connect, type WsClient } from 'nestjs-ws-endpoints/client';
import { FaultProxy } from './utils/fault-proxy';
import { platforms, startApp } from './utils/test-app';
import { until } from './utils/until';
import { QueryUser } from './utils/query-user.guard';

/** The sessions of the current test, by user, newest last. */
const sessions = new Map<string, WebSocketContext[]>();

@Controller()
@UseGuards(QueryUser)
class PresenceController {
  constructor(private readonly presence: Presence) {}

  /** Joins the room with its user's name as meta, says how the join went, then echoes nothing. */
  @Ws('room/:room', { heartbeat: false })
  plain(@Socket() socket: WebSocketContext, @Param('room') room: string) {
    return this.member(socket, room);
  }

  @Ws('reliable/:room', { heartbeat: false, reliable: { resumeWindow: 1000 } })
  reliable(@Socket() socket: WebSocketContext, @Param('room') room: string) {
    return this.member(socket, room);
  }

  /** A member sent the room's presence; `leave` leaves the room. */
  @Ws('feed/:room', { heartbeat: false })
  async feed(@Socket() socket: WebSocketContext, @Param('room') room: string) {
    await socket.join(room, { meta: { name: socket.userId }, watch: true });
    for await (const message of socket) {
      if (message.text === 'leave') socket.leave(room);
      await socket.send({ said: message.text });
    }
  }

  /** The room's presence events. */
  @Ws('watch/:room', { heartbeat: false })
  async watch(@Socket() socket: WebSocketContext, @Param('room') room: string) {
    const watching = this.presence
      .watch(room)
      .subscribe((event) => void socket.send(event).catch(() => undefined));
    await socket.closed;
    watching.unsubscribe();
  }

  /** Tries each argument of `?join=` (JSON) as `socket.join(...args)` and says what it threw. */
  @Ws('misuse', { heartbeat: false })
  async misuse(@Socket() socket: WebSocketContext) {
    const args = JSON.parse(String(socket.query.join)) as [string, unknown];
    const meta = args[1] === 'bigint' ? { meta: 1n } : (args[1] as object);
    try {
      await socket.join(args[0], meta);
      await socket.send('joined');
    } catch (error) {
      await socket.send(
        `${(error as Error).name}: ${(error as Error).message}`,
      );
    }
  }

  private async member(socket: WebSocketContext, room: string) {
    const user = socket.userId ?? '';
    sessions.set(user, [...(sessions.get(user) ?? []), socket]);
    const joined = await socket.join(room, { meta: { name: user } });
    await socket.send({ joined: room, ...joined });
    await socket.closed;
  }
}

/** What a raw `ws` client got, parsed, from the moment it is made. */
function observed(url: string) {
  const ws = new WebSocket(url);
  const got: unknown[] = [];
  ws.on('message', (data: Buffer) => got.push(JSON.parse(data.toString())));
  ws.on('error', () => undefined);
  return { ws, got };
}

/** A raw `ws` client and the texts it got, from the moment it is made. */
function raw(url: string) {
  const ws = new WebSocket(url);
  const got: string[] = [];
  ws.on('message', (data: Buffer) => got.push(data.toString()));
  ws.on('error', () => undefined);
  return { ws, got };
}

/** The members a watcher's events add up to. */
function membersOf(events: PresenceEvent[]): string[] {
  const members = new Set<string>();
  for (const event of events) {
    if (event.type === 'state') {
      members.clear(); // a state replaces the list
      event.members.forEach((m) => members.add(m.key));
    } else {
      event.joins.forEach((m) => members.add(m.key));
      event.leaves.forEach((m) => members.delete(m.key));
    }
  }
  return Array.from(members).sort();
}

describe.each(platforms)(
  'presence, joins and group recovery on one instance (%s)',
  (platform) => {
    let app: INestApplication;
    let base: string;
    let port: number;
    const sockets: WebSocket[] = [];
    const clients: WsClient[] = [];
    let proxy: FaultProxy | undefined;

    beforeAll(async () => {
      ({ app } = await startApp(
        {
          imports: [
            WsEndpointsModule.forRoot({
              presence: { grace: 300, ttl: 900 },
              backplane: new MemoryBackplane({ historySize: 3 }),
            }),
          ],
          controllers: [PresenceController],
        },
        undefined,
        platform,
      ));
      base = (await app.getUrl()).replace('http', 'ws');
      port = Number(new URL(base).port);
    });

    afterEach(async () => {
      for (const client of clients.splice(0)) client.close();
      for (const ws of sockets.splice(0)) ws.terminate();
      await proxy?.close();
      proxy = undefined;
      await app.get(WebSocketSessions).settled();
      sessions.clear();
    });

    afterAll(() => app.close());

    function open(path: string) {
      const made = observed(`${base}${path}`);
      sockets.push(made.ws);
      return made;
    }

    it('lists one member per user with its meta, counts them, and sends watchers the state, then joins and leaves', async () => {
      const presence = app.get(Presence);
      const watcher = open('/watch/r1');
      await until(() => watcher.got.length === 1, 'the state');
      expect(watcher.got[0]).toEqual({
        type: 'state',
        group: 'r1',
        members: [],
      });
      const ann = open('/room/r1?user=ann');
      const bob = [open('/room/r1?user=bob'), open('/room/r1?user=bob')];
      await until(
        () => [ann, ...bob].every((m) => m.got.length === 1),
        'the joins',
      );
      expect(await presence.list('r1')).toEqual(
        expect.arrayContaining([
          { key: 'ann', userId: 'ann', meta: { name: 'ann' } },
          { key: 'bob', userId: 'bob', meta: { name: 'bob' } },
        ]),
      );
      expect(await presence.count('r1')).toBe(2);
      const events = watcher.got as PresenceEvent[];
      await until(() => membersOf(events).length === 2, 'two joins');
      // bob's second session is no new member
      expect(events.filter((e) => e.type === 'diff').length).toBe(2);
      bob[0].ws.close();
      ann.ws.close();
      await until(
        () => membersOf(events).join() === 'bob',
        'ann leaves after the grace period',
      );
      expect(await presence.count('r1')).toBe(1);
      expect(events.at(-1)).toEqual({
        type: 'diff',
        group: 'r1',
        joins: [],
        leaves: [{ key: 'ann', userId: 'ann', meta: { name: 'ann' } }],
      });
    });

    it('sends a member that joins with watch: true the state, then joins and leaves, until it leaves', async () => {
      const feed = open('/feed/r6?user=fay');
      await until(() => feed.got.length === 1, 'the state');
      // the state may or may not list fay herself yet; her join comes as a diff if it does not
      const other = open('/room/r6?user=gus');
      await until(
        () => membersOf(feed.got as PresenceEvent[]).length === 2,
        'gus joins',
      );
      other.ws.close();
      await until(
        () => membersOf(feed.got as PresenceEvent[]).join() === 'fay',
        'gus leaves',
      );
      feed.ws.send('leave');
      await until(
        () => feed.got.some((m) => (m as { said?: string }).said === 'leave'),
        'she leaves',
      );
      const seen = feed.got.length;
      // a change after she left is not sent to her
      const late = open('/room/r6?user=hal');
      await until(() => late.got.length === 1, 'hal joins');
      feed.ws.send('ping');
      await until(() => feed.got.length === seen + 1, 'the next answer');
      expect(feed.got.at(-1)).toEqual({ said: 'ping' });
    });

    it('makes no leave and join when the user is back within the grace period', async () => {
      const watcher = open('/watch/r2');
      const eve = open('/room/r2?user=eve');
      const zed = open('/room/r2?user=zed');
      await until(
        () => membersOf(watcher.got as PresenceEvent[]).length === 2,
        'both join',
      );
      eve.ws.close();
      const back = open('/room/r2?user=eve');
      await until(() => back.got.length === 1, 'eve is back');
      zed.ws.close();
      // eve's leave would have been announced before zed's, which came later
      await until(
        () => membersOf(watcher.got as PresenceEvent[]).join() === 'eve',
        'zed leaves',
      );
      const diffs = (watcher.got as PresenceEvent[]).filter(
        (e) => e.type === 'diff',
      );
      expect(
        diffs.map(
          (d) =>
            d.type === 'diff' && [d.joins.length, d.leaves.map((l) => l.key)],
        ),
      ).toEqual([
        [1, []],
        [1, []],
        [0, ['zed']],
      ]);
    });

    it.each([
      [
        'an empty name',
        ['', {}],
        'TypeError: A group is named by a non-empty string, got "".',
      ],
      [
        'a name of 129 characters',
        ['x'.repeat(129), {}],
        "TypeError: A group's name has at most 128 characters, got 129.",
      ],
      [
        'a number',
        [7, {}],
        'TypeError: A group is named by a non-empty string, got number.',
      ],
      ['meta with no JSON form', ['g', 'bigint'], 'TypeError'],
    ])(
      'refuses %s with a TypeError before joining',
      async (_what, args, said) => {
        const misuse = raw(
          `${base}/misuse?join=${encodeURIComponent(JSON.stringify(args))}`,
        );
        sockets.push(misuse.ws);
        await until(() => misuse.got.length === 1, 'the answer');
        const [text] = misuse.got;
        expect(text.startsWith(said)).toBe(true);
      },
    );

    describe('a reliable client whose session ended', () => {
      /** A client through the proxy in room `room` as `user`, with what it got. */
      function member(room: string, user: string) {
        const client = connect(proxy!.url(`/reliable/${room}?user=${user}`), {
          WebSocket: WebSocket as never,
          reconnect: { initialDelay: 10, maxDelay: 50 },
        });
        clients.push(client);
        const got: Array<{
          text?: string;
          joined?: string;
          recovered?: boolean;
          missed?: number;
        }> = [];
        const lost: string[] = [];
        client.on('message', (m) => got.push(m.json()));
        client.on('lost', ({ group }) => lost.push(group));
        return { client, got, lost };
      }

      /** Drops the client's connection and keeps it away until its session has ended. */
      async function outlive(user: string) {
        const [session] = sessions.get(user)!;
        proxy!.refuse();
        proxy!.cutAll();
        await session.closed;
      }

      beforeEach(async () => {
        proxy = await FaultProxy.start({ port });
      });

      it('resumes on its own instance with what the room got meanwhile, and counts the resume', async () => {
        const broadcaster = app.get(Broadcaster);
        const { resumes } = app.get(WsMetrics).snapshot();
        const rita = member('r7', 'rita');
        await until(() => rita.got.length === 1, 'rita joins');
        proxy!.refuse();
        proxy!.cutAll();
        const [session] = sessions.get('rita')!;
        await until(
          () => session.state === 'reconnecting',
          'the session waits',
        );
        await broadcaster.to('r7').send({ text: 'while away' });
        proxy!.allow();
        await until(() => rita.got.length === 2, 'the message, on resume');
        expect(rita.got[1]).toEqual({ text: 'while away' });
        expect(sessions.get('rita')).toHaveLength(1);
        expect(app.get(WsMetrics).snapshot().resumes).toBe(resumes + 1);
      });

      it('recovers what its room got meanwhile, before what comes after, when it joins again', async () => {
        const broadcaster = app.get(Broadcaster);
        const { recoveries } = app.get(WsMetrics).snapshot();
        const rita = member('r3', 'rita');
        await until(() => rita.got.length === 1, 'rita joins');
        await broadcaster.to('r3').send({ text: 'before' });
        await until(() => rita.got.length === 2, 'the first message');
        await outlive('rita');
        await broadcaster.to('r3').send({ text: 'away-1' });
        await broadcaster.to('r3').send({ text: 'away-2' });
        proxy!.allow();
        await until(
          () => rita.got.length === 5,
          'the recovery and the new join',
        );
        await broadcaster.to('r3').send({ text: 'after' });
        await until(() => rita.got.length === 6, 'the live message');
        expect(rita.got).toEqual([
          { joined: 'r3', recovered: true, missed: 0 },
          { text: 'before' },
          { text: 'away-1' },
          { text: 'away-2' },
          { joined: 'r3', recovered: true, missed: 2 },
          { text: 'after' },
        ]);
        expect(app.get(WsMetrics).snapshot().recoveries).toEqual({
          ok: recoveries.ok + 1,
          failed: recoveries.failed,
        });
        expect(rita.lost).toEqual([]);
      });

      it('gets none of them, and is told, when the history no longer has them all', async () => {
        const broadcaster = app.get(Broadcaster);
        const { recoveries } = app.get(WsMetrics).snapshot();
        const rita = member('r4', 'rita');
        await until(() => rita.got.length === 1, 'rita joins');
        await broadcaster.to('r4').send({ text: 'before' });
        await until(() => rita.got.length === 2, 'the first message');
        await outlive('rita');
        // the history keeps 3
        for (let n = 0; n < 4; n++)
          await broadcaster.to('r4').send({ text: `away-${n}` });
        proxy!.allow();
        await until(() => rita.got.length === 3, 'the new join');
        expect(rita.got[2]).toEqual({
          joined: 'r4',
          recovered: false,
          missed: 0,
        });
        expect(app.get(WsMetrics).snapshot().recoveries.failed).toBe(
          recoveries.failed + 1,
        );
        expect(rita.lost).toEqual(['r4']);
        await broadcaster.to('r4').send({ text: 'after' });
        await until(() => rita.got.length === 4, 'the live message');
        expect(rita.got[3]).toEqual({ text: 'after' });
      });
    });

    describe('a connection that names positions it never had (ws_since)', () => {
      /** Connects a raw reliable session with `query` and resolves with the join note. */
      async function joinWith(query: string) {
        const ws = new WebSocket(`${base}/reliable/r5?user=mal&${query}`);
        sockets.push(ws);
        const frames: string[] = [];
        ws.on('message', (data: Buffer) => frames.push(data.toString()));
        ws.on('error', () => undefined);
        await until(
          () => frames.some((f) => f.includes('"joined"')),
          'the join note',
        );
        return frames;
      }

      beforeAll(async () => {
        const broadcaster = app.get(Broadcaster);
        const keeper = open('/room/r5?user=keeper');
        await until(() => keeper.got.length === 1, 'the room exists');
        await broadcaster.to('r5').send({ text: 'one' });
      });

      it.each([
        ['garbage', 'ws_since=%00%ff~~'],
        ['no group', 'ws_since=1~e~'],
        ['a negative offset', 'ws_since=-1~e~r5'],
        ['a group name of 129 characters', `ws_since=1~e~${'x'.repeat(129)}`],
        [
          'three hundred of them',
          Array.from({ length: 300 }, (_, i) => `ws_since=${i}~e~g${i}`).join(
            '&',
          ),
        ],
      ])(
        'ignores %s: the session joins with nothing to recover',
        async (_what, query) => {
          const frames = await joinWith(query);
          expect(frames.at(-1)).toContain('"recovered":true');
          expect(frames.some((f) => f.startsWith('l '))).toBe(false);
        },
      );

      it.each([
        ['an unknown epoch', 'ws_since=0~no-such-epoch~r5'],
        ['an offset beyond the last', 'ws_since=99999999999~EPOCH~r5'],
      ])(
        'answers %s with l and recovered: false, and nothing else',
        async (_what, query) => {
          const position = (await joinWith('')).find((f) =>
            f.startsWith('s '),
          )!;
          const epoch = position.split(' ')[3];
          const frames = await joinWith(query.replace('EPOCH', epoch));
          expect(frames.filter((f) => f.startsWith('l '))).toHaveLength(1);
          expect(frames.some((f) => f.startsWith('g '))).toBe(false);
          expect(frames.at(-1)).toContain('"recovered":false');
        },
      );
    });
  },
);
