import { Controller, INestApplication, Query, UseGuards } from '@nestjs/common';
import { connect as tcpConnect, type Socket as NetSocket } from 'node:net';
import WebSocket from 'ws';
import {
  Broadcaster,
  Socket,
  WebSocketContext,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { platforms, startApp } from './utils/test-app';
import { until } from './utils/until';
import { upgradeRequest } from './utils/raw-http';
import { QueryUser } from './utils/query-user.guard';

/** The sessions by the `name` they were given in the query. */
const named = new Map<string, WebSocketContext>();

@Controller()
@UseGuards(QueryUser)
class RoomsController {
  /** Joins the groups in `?groups=a,b`, then waits for the end of the session. */
  @Ws('rooms', { sendHighWaterMark: 16 * 1024 })
  async rooms(
    @Socket() socket: WebSocketContext,
    @Query('groups') groups = '',
    @Query('name') name = '',
  ) {
    named.set(name, socket);
    for (const group of groups.split(',').filter(Boolean)) {
      await socket.join(group);
    }
    for await (const message of socket) {
      if (message.text.startsWith('leave '))
        socket.leave(message.text.slice(6));
    }
  }

  @Ws('reliable-rooms', { reliable: true })
  async reliableRooms(
    @Socket() socket: WebSocketContext,
    @Query('name') name = '',
  ) {
    named.set(name, socket);
    await socket.join('reliable');
    await socket.closed;
  }
}

/** A `ws` client that keeps what it receives, from the moment it is made. */
class Member {
  readonly got: string[] = [];
  readonly ws: WebSocket;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data: Buffer) => this.got.push(data.toString()));
    this.ws.on('error', () => undefined);
  }
}

describe.each(platforms)('groups and broadcast (%s)', (platform) => {
  let app: INestApplication;
  let broadcaster: Broadcaster;
  let base: string;
  const members: Member[] = [];
  const raw: NetSocket[] = [];

  beforeAll(async () => {
    ({ app } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({ heartbeat: false })],
        controllers: [RoomsController],
      },
      undefined,
      platform,
    ));
    broadcaster = app.get(Broadcaster);
    base = (await app.getUrl()).replace('http', 'ws');
  });

  afterEach(async () => {
    for (const member of members.splice(0)) member.ws.terminate();
    for (const socket of raw.splice(0)) socket.destroy();
    await app.get(WebSocketSessions).settled();
    named.clear();
  });

  afterAll(() => app.close());

  /** A member named `name`, in `groups`, of user `user`; resolves once its handler has joined. */
  async function member(name: string, groups: string[], user = name) {
    const made = new Member(
      `${base}/rooms?name=${name}&user=${user}&groups=${groups.join(',')}`,
    );
    members.push(made);
    await until(
      () => named.get(name)?.groups.size === groups.length,
      `${name} joins`,
    );
    return made;
  }

  it('sends to the members of a group only, once each, and counts them', async () => {
    const [ada, bob, cy] = [
      await member('ada', ['red']),
      await member('bob', ['red', 'blue']),
      await member('cy', ['blue']),
    ];
    expect(broadcaster.to('red').count).toBe(2);
    expect(broadcaster.to('red', 'blue').count).toBe(3);
    await expect(broadcaster.to('red').send('to red')).resolves.toBe(true);
    await expect(broadcaster.to('red', 'blue').send('to both')).resolves.toBe(
      true,
    );
    await until(() => cy.got.length === 1 && bob.got.length === 2, 'delivery');
    expect(ada.got).toEqual(['to red', 'to both']);
    expect(bob.got).toEqual(['to red', 'to both']);
    expect(cy.got).toEqual(['to both']);
    expect(named.get('bob')!.groups).toEqual(new Set(['red', 'blue']));
  });

  it('leaves out the sessions given to except(), by context or by id', async () => {
    const [ada, bob, cy] = [
      await member('ada', ['g']),
      await member('bob', ['g']),
      await member('cy', ['g']),
    ];
    const audience = broadcaster
      .to('g')
      .except(named.get('ada')!, named.get('bob')!.id);
    expect(audience.count).toBe(1);
    await audience.send('x');
    await until(() => cy.got.length === 1, 'delivery');
    expect(ada.got).toEqual([]);
    expect(bob.got).toEqual([]);
  });

  it('reaches every session of a user with toUser(), and every session with all()', async () => {
    const [phone, laptop, other] = [
      await member('phone', [], 'ada'),
      await member('laptop', ['g'], 'ada'),
      await member('other', [], 'bob'),
    ];
    expect(broadcaster.toUser('ada').count).toBe(2);
    await broadcaster.toUser('ada').send('for ada');
    expect(broadcaster.all().count).toBe(3);
    await broadcaster.all().send('for all');
    await until(
      () => other.got.length === 1 && phone.got.length === 2,
      'delivery',
    );
    expect(phone.got).toEqual(['for ada', 'for all']);
    expect(laptop.got).toEqual(['for ada', 'for all']);
    expect(other.got).toEqual(['for all']);
  });

  it('ends membership on leave() and with the session: no group is left behind', async () => {
    const ada = await member('ada', ['g', 'h']);
    await member('bob', ['g']);
    ada.ws.send('leave h');
    await until(() => !named.get('ada')!.groups.has('h'), 'ada leaves h');
    expect(broadcaster.to('h').count).toBe(0);
    ada.ws.close();
    await named.get('ada')!.closed;
    expect(broadcaster.to('g').count).toBe(1);
    expect(named.get('ada')!.groups.size).toBe(0);
  });

  it('serializes a broadcast once, whatever the number of members', async () => {
    const joined = await Promise.all(
      ['a', 'b', 'c'].map((n) => member(n, ['g'])),
    );
    let serialized = 0;
    const message = { toJSON: () => (serialized++, { n: 1 }) };
    await broadcaster.to('g').send(message);
    expect(serialized).toBe(1);
    await until(() => joined.every((m) => m.got.length === 1), 'delivery');
    expect(joined.map((m) => m.got[0])).toEqual([
      '{"n":1}',
      '{"n":1}',
      '{"n":1}',
    ]);
  });

  it('throws for a value with no JSON form before anything is sent', async () => {
    const ada = await member('ada', ['g']);
    expect(() => broadcaster.to('g').send(10n)).toThrow(TypeError);
    await broadcaster.to('g').send('after');
    await until(() => ada.got.length === 1, 'delivery');
    expect(ada.got).toEqual(['after']);
  });

  it('closes a member that does not read with 1013, while the others get every message', async () => {
    const fast = await member('fast', ['g']);
    // a peer that completes the handshake, then never reads
    const slow = tcpConnect(Number(new URL(base).port), '127.0.0.1');
    raw.push(slow);
    slow.on('error', () => undefined);
    slow.write(upgradeRequest('/rooms?name=slow&groups=g&user=slow'));
    await until(() => named.get('slow')?.groups.size === 1, 'slow joins');
    slow.pause();
    const chunk = 'x'.repeat(32 * 1024);
    let rounds = 0;
    while (named.get('slow')!.state === 'open') {
      await broadcaster.to('g').send(chunk);
      rounds++;
      // each round lets the sockets write, so that what the slow peer does not read piles up
      await new Promise(setImmediate);
      if (rounds > 2000) throw new Error('the slow member was never closed');
    }
    // it is closing with 1013 (its peer reads nothing, so no close frame will come back)
    const reason: unknown = named.get('slow')!.signal.reason;
    expect(reason).toMatchObject({ code: 1013, reason: 'Slow consumer' });
    await until(
      () => fast.got.length === rounds,
      'every message to the fast member',
      10_000,
    );
  });

  it("keeps a reliable session's groups while it waits for its client, and delivers on resume", async () => {
    const first = new Member(`${base}/reliable-rooms?name=r`);
    members.push(first);
    await until(
      () => first.got.length === 2 && named.has('r'),
      "the welcome, and the group's position",
    );
    const { token } = JSON.parse(first.got[0].split('\n')[1]) as {
      token: string;
    };
    const session = named.get('r')!;
    // the connection drops: the server holds the session, and its groups
    (first.ws as unknown as { _socket: NetSocket })._socket.destroy();
    await until(
      () => session.state === 'reconnecting',
      'the session waits for its client',
    );
    expect(broadcaster.to('reliable').count).toBe(1);
    await broadcaster.to('reliable').send('while away');
    const again = new Member(
      `${base}/reliable-rooms?ws_resume=${token}&ws_ack=0`,
    );
    members.push(again);
    await until(() => again.got.length === 3, 'the message after the resume');
    // the group's position, told on joining (and not acked), then the message, with its own
    expect(again.got[1]).toMatch(/^s 1 0 \S+ reliable\n$/);
    expect(again.got[2]).toMatch(/^g 2 1 \S+ reliable\nwhile away$/);
    expect(session.groups).toEqual(new Set(['reliable']));
    // a close frame ends the session (a drop would leave it waiting for its client)
    again.ws.close();
    await session.closed;
    expect(session.groups.size).toBe(0);
  });
});
