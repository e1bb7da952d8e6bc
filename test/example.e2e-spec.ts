import { INestApplication } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { PresenceEvent, WsMetricsSnapshot } from 'nestjs-ws-endpoints';
import {
  connect,
  type ConnectOptions,
  type WebSocketConstructor,
  type WsClient,
} from 'nestjs-ws-endpoints/client';
import {
  connectWs,
  expectRejected,
  wsUrl,
  type WsTestClient,
} from 'nestjs-ws-endpoints/testing';
import WebSocket from 'ws';
import { AppModule } from '../src/app.module';
import type { ChatMessage } from '../src/example/chat/chat.controller';
import { rawRequest, upgradeRequest } from './utils/raw-http';
import { describeWithRedis, REDIS_URL } from './utils/redis';
import { startApp } from './utils/test-app';
import { until } from './utils/until';

describe('the example application', () => {
  let app: INestApplication;

  beforeAll(async () => {
    ({ app } = await startApp({ imports: [AppModule] }));
  });

  afterAll(() => app.close());

  it("answers each message on /socket/handle with the seed's echo", async () => {
    const client = await connectWs(app, '/socket/handle');
    for (const text of ['Hello', 'второе сообщение']) {
      client.send(text);
      const reply = (await client.next()).text;
      const [, echoed, time] =
        /^Your message: (.*) at (\S+)$/.exec(reply) ?? [];
      expect(echoed).toBe(text);
      expect(new Date(time).toISOString()).toBe(time);
    }
    await client.close();
  });

  it('answers a binary message on /socket/handle with the same bytes, as binary', async () => {
    const client = await connectWs(app, '/socket/handle');
    const bytes = Buffer.from([0x00, 0x01, 0xc3, 0xa9, 0xff]);
    client.send(bytes);
    const reply = await client.next();
    expect(reply.isBinary).toBe(true);
    expect(reply.data).toEqual(bytes);
    await client.close();
  });

  it('serves the echo client page at GET /', async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/`);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await response.text();
    expect(html).toContain('/socket/reliable');
    expect(html).toContain("from '/client.js'");
    expect(html).toContain('<div id="status"');
    expect(html).toContain('<button id="send-bytes"');
    expect(html).toContain('/chat/${room}');
    expect(html).toContain('<ul id="chat-members"');
    expect(html).toContain('/dashboard/metrics');
    expect(html).toContain('<canvas id="dash-chart"');
  });

  it('serves the client as one ES module at GET /client.js', async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/client.js`);
    expect(response.headers.get('content-type')).toMatch(/^text\/javascript/);
    const code = await response.text();
    expect(code).toMatch(/export\s*\{[^}]*\bconnect\b/);
    expect(code).not.toMatch(/\brequire\(|^import /m);
  });

  it('closes its sessions with 1001 when the app shuts down', async () => {
    const { app } = await startApp({ imports: [AppModule] });
    const client = await connectWs(app, '/socket/handle');
    await app.close();
    expect(await client.closed).toEqual({
      code: 1001,
      reason: 'Server shutting down',
    });
  });
});

describe('the example application settings (@nestjs/config + forRootAsync)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('takes WS_MAX_PAYLOAD from the environment', async () => {
    process.env.WS_MAX_PAYLOAD = '16';
    const { app } = await startApp({ imports: [AppModule] });
    const client = await connectWs(app, '/socket/handle');
    client.send('x'.repeat(16));
    expect((await client.next()).text).toMatch(/^Your message: x{16} at /);
    client.send('x'.repeat(17));
    expect((await client.closed).code).toBe(1009);
    await app.close();
  });

  it('takes WS_ALLOWED_ORIGINS from the environment', async () => {
    process.env.WS_ALLOWED_ORIGINS =
      'https://app.example, https://admin.example';
    const { app } = await startApp({ imports: [AppModule] });
    await (
      await connectWs(app, '/socket/handle', {
        origin: 'https://admin.example',
      })
    ).close();
    await expectRejected(app, '/socket/handle', 403, {
      origin: 'https://evil.example',
    });
    await app.close();
  });

  it('takes CHAT_TOKENS from the environment', async () => {
    process.env.CHAT_TOKENS = 'carol:carol-secret, dave:dave-secret';
    const { app } = await startApp({ imports: [AppModule] });
    const carol = new ChatMember(app, 'settings', {
      token: () => 'carol-secret',
    });
    carol.client.send({ text: 'hi' });
    await carol.received(1);
    expect(carol.messages[0].from).toBe('carol');
    carol.close();
    await expectRejected(app, '/chat/settings?token=alice-token', 401);
    await app.close();
  });

  it('refuses to start with CHAT_TOKENS that are not user:token pairs, not showing a token', async () => {
    process.env.CHAT_TOKENS = 'alice:alice-token,bob-token';
    await expect(startApp({ imports: [AppModule] })).rejects.toThrow(
      'CHAT_TOKENS must list user:token pairs separated by commas; entry 2 is not one.',
    );
  });

  it('refuses to start with a setting that is not a number, naming it', async () => {
    process.env.WS_HEARTBEAT_INTERVAL = 'soon';
    await expect(startApp({ imports: [AppModule] })).rejects.toThrow(
      'WS_HEARTBEAT_INTERVAL must be a non-negative number, got "soon".',
    );
  });
});

/** `ws`'s WebSocket, sending `headers` with its upgrade request (which a browser cannot). */
function withHeaders(headers: Record<string, string>): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { headers });
    }
  } as unknown as WebSocketConstructor;
}

type ErrorFrame = { error: { status: number; message: unknown } };

/**
 * A member of a chat room: the package's client (on `ws`) with what it got from the moment it
 * is made, sorted into chat messages, presence events and error frames.
 */
class ChatMember {
  readonly client: WsClient;
  readonly got: unknown[] = [];

  constructor(
    app: INestApplication,
    readonly room: string,
    options: ConnectOptions = {},
  ) {
    this.client = connect(wsUrl(app, `/chat/${room}`), {
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      ...options,
    });
    this.client.on('message', (message) => this.got.push(message.json()));
    ChatMember.open.add(this);
  }

  /** Every member not closed yet, for `afterEach`. */
  static readonly open = new Set<ChatMember>();

  static closeAll(): void {
    for (const member of ChatMember.open) member.close();
  }

  close(): void {
    this.client.close();
    ChatMember.open.delete(this);
  }

  get messages(): ChatMessage[] {
    return this.got.filter((m): m is ChatMessage => 'from' in (m as object));
  }

  get errors(): ErrorFrame[] {
    return this.got.filter((m): m is ErrorFrame => 'error' in (m as object));
  }

  get presence(): PresenceEvent[] {
    return this.got.filter((m): m is PresenceEvent => 'type' in (m as object));
  }

  /** Who the member list shows: the presence events folded, by user id. */
  get members(): string[] {
    const members = new Map<string, string | undefined>();
    for (const event of this.presence) {
      if (event.type === 'state') members.clear();
      const [joins, leaves] =
        event.type === 'state'
          ? [event.members, []]
          : [event.joins, event.leaves];
      for (const { key } of leaves) members.delete(key);
      for (const { key, userId } of joins) members.set(key, userId);
    }
    return Array.from(members.values(), String).sort();
  }

  /** Resolves once `count` chat messages have come. */
  received(count: number): Promise<void> {
    return until(
      () => this.messages.length >= count,
      `${count} chat message(s) reach ${this.client.session ?? 'a member'} of ${this.room}`,
    );
  }

  /** Resolves once the member list shows exactly `users`. */
  sees(...users: string[]): Promise<void> {
    const expected = JSON.stringify(users.sort());
    return until(
      () => JSON.stringify(this.members) === expected,
      `the member list of ${this.room} shows ${expected} (it shows ${JSON.stringify(this.members)})`,
    );
  }
}

/** The next snapshot of a dashboard connection that satisfies `test`. */
async function nextSnapshot(
  dashboard: WsTestClient,
  test: (snapshot: WsMetricsSnapshot) => boolean,
  what: string,
): Promise<WsMetricsSnapshot> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`No dashboard snapshot showed ${what}`);
    const snapshot = await dashboard.nextJson<WsMetricsSnapshot>(left);
    if (test(snapshot)) return snapshot;
  }
}

/** A room of its own for each test: presence and messages of one do not reach another. */
const freshRoom = () => `room-${randomUUID().slice(0, 8)}`;

const alice = { token: () => 'alice-token' };
const bob = { token: () => 'bob-token' };

describe('the example chat on /chat/:room', () => {
  let app: INestApplication;

  beforeAll(async () => {
    const saved = process.env.WS_PRESENCE_GRACE;
    // a member who leaves is gone from the list at once, rather than after 5 s
    process.env.WS_PRESENCE_GRACE = '0';
    try {
      ({ app } = await startApp({ imports: [AppModule] }));
    } finally {
      if (saved === undefined) delete process.env.WS_PRESENCE_GRACE;
      else process.env.WS_PRESENCE_GRACE = saved;
    }
  });

  afterEach(() => ChatMember.closeAll());
  afterAll(() => app.close());

  it('refuses a room name that is not 1–32 of a-z, 0-9 and "-" with 400', async () => {
    for (const room of ['Lobby', 'lobby_1', 'a'.repeat(33), 'caf%C3%A9']) {
      const { status, body } = await rawRequest(
        app,
        upgradeRequest(`/chat/${room}`, {
          Authorization: 'Bearer alice-token',
        }),
      );
      expect({ room, status }).toEqual({ room, status: 400 });
      expect(JSON.parse(body)).toMatchObject({
        statusCode: 400,
        message:
          'A room name is 1 to 32 characters: lower-case letters, digits and "-".',
      });
    }
  });

  it('refuses an upgrade without a valid token with 401', async () => {
    for (const headers of [
      {} as Record<string, string>,
      { Authorization: 'Bearer wrong-token' },
      { Authorization: 'Basic YWxpY2U6YWxpY2UtdG9rZW4=' },
      { 'Sec-WebSocket-Protocol': 'chat, bearer.wrong-token' },
    ]) {
      const { status, body } = await rawRequest(
        app,
        upgradeRequest('/chat/lobby', headers),
      );
      expect({ headers, status }).toEqual({ headers, status: 401 });
      expect(JSON.parse(body)).toMatchObject({
        statusCode: 401,
        message: expect.stringContaining('A chat token is required'),
      });
    }
    const { status } = await rawRequest(
      app,
      upgradeRequest('/chat/lobby?token=wrong-token'),
    );
    expect(status).toBe(401);
  });

  it.each([
    [
      'Authorization: Bearer <token>',
      { WebSocket: withHeaders({ authorization: 'Bearer bob-token' }) },
      'bob',
    ],
    ['?token=<token>', { token: () => 'alice-token' }, 'alice'],
    [
      'the subprotocol bearer.<token>',
      { protocols: ['chat', 'bearer.bob-token'] },
      'bob',
    ],
  ])(
    'lets in the user whose token comes as %s',
    async (_form, options: ConnectOptions, user) => {
      const member = new ChatMember(app, freshRoom(), options);
      member.client.send({ text: `hello from ${user}` });
      await member.received(1);
      expect(member.messages[0]).toMatchObject({
        from: user,
        text: `hello from ${user}`,
      });
    },
  );

  it('selects the subprotocol "chat" for a client that offers it beside bearer.<token>', async () => {
    const client = await connectWs(app, `/chat/${freshRoom()}`, {
      protocols: ['chat', 'bearer.alice-token'],
    });
    expect(client.ws.protocol).toBe('chat');
    await client.close();
  });

  it('refuses with 400 a client that offers bearer.<token> alone, naming the subprotocol to offer', async () => {
    const { status, body } = await rawRequest(
      app,
      upgradeRequest('/chat/lobby', {
        'Sec-WebSocket-Protocol': 'bearer.alice-token',
      }),
    );
    expect(status).toBe(400);
    expect(JSON.parse(body).message).toContain('this endpoint speaks chat.');
  });

  it('answers an invalid message with an error frame and keeps the socket open', async () => {
    const member = new ChatMember(app, freshRoom(), alice);
    const invalid: unknown[] = [
      { text: '' },
      { text: 'x'.repeat(501) },
      { text: 42 },
      {},
      { text: 'hi', extra: true },
      'not JSON',
    ];
    for (const message of invalid) member.client.send(message);
    member.client.send({ text: 'x'.repeat(500) });
    // the session handles its messages in order: the valid one comes after every error frame
    await member.received(1);
    expect(member.errors).toEqual(
      invalid.map(() => ({
        error: { status: 400, message: expect.anything() },
      })),
    );
    expect(member.errors[0].error.message).toEqual([
      'text must be longer than or equal to 1 characters',
    ]);
    expect(member.errors[4].error.message).toEqual([
      'property extra should not exist',
    ]);
    expect(member.messages.map(({ text }) => text.length)).toEqual([500]);
    expect(member.client.state).toBe('open');
  });

  it('sends each message to every member of the room as {room, from, text, at}, and to no other room', async () => {
    const room = freshRoom();
    const a = new ChatMember(app, room, alice);
    const b = new ChatMember(app, room, bob);
    const elsewhere = new ChatMember(app, freshRoom(), bob);
    await a.sees('alice', 'bob');
    await b.sees('alice', 'bob');
    await elsewhere.sees('bob');

    a.client.send({ text: 'hello, bob' });
    await Promise.all([a.received(1), b.received(1)]);
    b.client.send({ text: 'hi, alice' });
    await Promise.all([a.received(2), b.received(2)]);

    for (const member of [a, b]) {
      expect(member.messages).toEqual([
        { room, from: 'alice', text: 'hello, bob', at: expect.any(String) },
        { room, from: 'bob', text: 'hi, alice', at: expect.any(String) },
      ]);
      for (const { at } of member.messages)
        expect(new Date(at).toISOString()).toBe(at);
    }
    expect(a.messages).toEqual(b.messages);
    // sent after the others: once it is back, the room's would have come too
    elsewhere.client.send({ text: 'anyone?' });
    await elsewhere.received(1);
    expect(elsewhere.messages.map(({ text }) => text)).toEqual(['anyone?']);
  });

  it("sends the room's presence: the members, then who joins and who leaves", async () => {
    const room = freshRoom();
    const group = `chat:${room}`;
    const a = new ChatMember(app, room, alice);
    await a.sees('alice');
    expect(a.presence[0]).toMatchObject({ type: 'state', group });

    const b = new ChatMember(app, room, bob);
    await a.sees('alice', 'bob');
    await b.sees('alice', 'bob');
    expect(a.presence).toContainEqual({
      type: 'diff',
      group,
      joins: [
        { key: 'bob', userId: 'bob', meta: { since: expect.any(String) } },
      ],
      leaves: [],
    });

    // a second session of a user adds no member
    const again = new ChatMember(app, room, bob);
    await again.sees('alice', 'bob');

    b.close();
    again.close();
    await a.sees('alice');
    expect(a.presence.at(-1)).toEqual({
      type: 'diff',
      group,
      joins: [],
      leaves: [
        { key: 'bob', userId: 'bob', meta: { since: expect.any(String) } },
      ],
    });
  });
});

describe('the example dashboard on /dashboard/metrics', () => {
  let app: INestApplication;

  beforeAll(async () => {
    ({ app } = await startApp({ imports: [AppModule] }));
  });

  afterEach(() => ChatMember.closeAll());
  afterAll(() => app.close());

  it('sends WsMetrics.snapshot() at once, then every second, as sessions open and close', async () => {
    const dashboard = await connectWs(app, '/dashboard/metrics');
    const first = await dashboard.nextJson<WsMetricsSnapshot>();
    expect(new Date(first.at).toISOString()).toBe(first.at);
    expect(first.sessions.byEndpoint).toMatchObject({
      '/dashboard/metrics': { open: 1, total: 1 },
      '/chat/:room': { open: 0, total: 0 },
    });

    const room = freshRoom();
    const members = [
      new ChatMember(app, room, alice),
      new ChatMember(app, room, bob),
    ];
    const chatOpen = (open: number) => (snapshot: WsMetricsSnapshot) =>
      snapshot.sessions.byEndpoint['/chat/:room']?.open === open;
    const joined = await nextSnapshot(
      dashboard,
      chatOpen(2),
      '2 chat sessions',
    );
    expect(joined.sessions.open).toBe(3);
    expect(Date.parse(joined.at)).toBeGreaterThan(Date.parse(first.at));

    for (const member of members) member.close();
    const left = await nextSnapshot(
      dashboard,
      chatOpen(0),
      'the chat sessions closed',
    );
    expect(left.sessions.open).toBe(1);
    expect(left.closes['1000']).toBeGreaterThanOrEqual(2);
    await dashboard.close();
  });
});

describeWithRedis('the example app with REDIS_URL', () => {
  const instances: INestApplication[] = [];

  beforeAll(async () => {
    const saved = process.env.REDIS_URL;
    process.env.REDIS_URL = REDIS_URL;
    try {
      for (let i = 0; i < 2; i++)
        instances.push((await startApp({ imports: [AppModule] })).app);
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });

  afterEach(() => ChatMember.closeAll());
  afterAll(() => Promise.all(instances.map((app) => app.close())));

  it('shares rooms and their presence between instances on one Redis', async () => {
    const room = freshRoom();
    const a = new ChatMember(instances[0], room, alice);
    const b = new ChatMember(instances[1], room, bob);
    await a.sees('alice', 'bob');
    await b.sees('alice', 'bob');
    a.client.send({ text: 'across instances' });
    await Promise.all([a.received(1), b.received(1)]);
    expect(b.messages).toEqual([
      { room, from: 'alice', text: 'across instances', at: expect.any(String) },
    ]);
  });
});
