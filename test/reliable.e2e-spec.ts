import { Controller, INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import { once } from 'node:events';
import WebSocket from 'ws';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import type { ConnectOptions, WsClient } from 'nestjs-ws-endpoints/client';
import { Deferred } from './utils/deferred';
import type { FaultProxy } from './utils/fault-proxy';
import { ProxiedClients } from './utils/proxied-clients';
import { propertySeed } from './utils/seed';
import { platforms, startApp, TestApp } from './utils/test-app';
import { until } from './utils/until';
import { within } from './utils/within';

/** Messages each way in one run. */
const N = 1000;
const RUNS = Number(process.env.FAULT_RUNS ?? 6);
// the seed is in the test's name; FAULT_SEED replays a run
const SEED = propertySeed('FAULT_SEED');

/** Called on each message delivered, either way: where a test cuts the connection. */
let delivered: () => void = () => undefined;

/** What each session's handler saw, in the order the sessions started. */
const sessions: Array<{ id: string; got: string[]; done: Deferred }> = [];

/**
 * The session a client is on. A connection cut before its welcome reached the client leaves a
 * session the client never heard of (it waits out its window, having got nothing): the client
 * starts another.
 */
const sessionOf = (client: WsClient) =>
  sessions.find((session) => session.id === client.session);
/** How often a request was processed, by its payload. */
const processed = new Map<string, number>();
/** Requests whose handler waits for the test before it replies. */
const held = new Map<string, Deferred>();
/** How many sends of the small-buffer handler have resolved. */
const sent = { count: 0, go: new Deferred() };

@Controller()
class FaultController {
  /** Sends N messages while it reads N: both ways at once, across every drop. */
  @Ws('both', { reliable: { resumeWindow: 10_000 }, heartbeat: false })
  async both(@Socket() socket: WebSocketContext) {
    const session = {
      id: socket.id,
      got: [] as string[],
      done: new Deferred(),
    };
    sessions.push(session);
    const sending = (async () => {
      for (let i = 1; i <= N; i++) await socket.send(`s${i}`);
    })();
    for await (const message of socket) {
      session.got.push(message.text);
      if (session.got.length === N) break;
    }
    await sending;
    session.done.resolve();
    await socket.closed;
  }

  /** Answers the client's message i with its own message i: one of each in flight at a time. */
  @Ws('turns', { reliable: { resumeWindow: 10_000 }, heartbeat: false })
  async turns(@Socket() socket: WebSocketContext) {
    const session = {
      id: socket.id,
      got: [] as string[],
      done: new Deferred(),
    };
    sessions.push(session);
    for await (const message of socket) {
      session.got.push(message.text);
      delivered();
      await socket.send(`s${session.got.length}`);
      if (session.got.length === N) break;
    }
    session.done.resolve();
    await socket.closed;
  }

  /** Sends 100 messages of 100 bytes, counting the sends that resolved, through a 1 KiB replay buffer. */
  @Ws('small-buffer', { reliable: { replayBuffer: 1024 }, heartbeat: false })
  async smallBuffer(@Socket() socket: WebSocketContext) {
    sent.count = 0;
    await sent.go.promise;
    for (let i = 1; i <= 100; i++) {
      await socket.send(`${i}`.padStart(100, '.'));
      sent.count = i;
    }
    await socket.closed;
  }

  /** Sends until its client, which never acks, is closed as a slow consumer. */
  @Ws('no-acks', {
    reliable: { replayBuffer: 1024 },
    sendTimeout: 300,
    heartbeat: false,
  })
  async noAcks(@Socket() socket: WebSocketContext) {
    for (;;) await socket.send('.'.repeat(100));
  }

  @Ws('work', { reliable: true, heartbeat: false })
  async reliableWork(@Socket() socket: WebSocketContext) {
    await work(socket);
  }

  @Ws('plain-work', { requests: true, heartbeat: false })
  async plainWork(@Socket() socket: WebSocketContext) {
    await work(socket);
  }
}

/** Answers each request with its payload, once the test lets it go when it is held. */
async function work(socket: WebSocketContext) {
  for await (const message of socket) {
    if (!message.id) continue;
    processed.set(message.text, (processed.get(message.text) ?? 0) + 1);
    await held.get(message.text)?.promise;
    await socket.reply(message, `done ${message.text}`).catch(() => undefined);
  }
}

const fast: ConnectOptions = {
  WebSocket: WebSocket as never,
  reconnect: { initialDelay: 5, maxDelay: 20 },
  queue: { messages: 2 * N },
};

/** Collects what a client receives, from the moment it is made. */
function collect(client: WsClient): string[] {
  const got: string[] = [];
  client.on('message', (message) => got.push(message.text));
  return got;
}

const numbered = (prefix: string) =>
  Array.from({ length: N }, (_, i) => `${prefix}${i + 1}`);

describe.each(platforms)('reliable mode through faults (%s)', (platform) => {
  let t: TestApp;
  let app: INestApplication;
  const peers = new ProxiedClients(fast);
  let proxy: FaultProxy;

  beforeAll(async () => {
    t = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({})],
        controllers: [FaultController],
      },
      undefined,
      platform,
    );
    app = t.app;
  });

  beforeEach(async () => {
    sessions.length = 0;
    processed.clear();
    held.clear();
    proxy = await peers.start(app);
  });

  afterEach(async () => {
    await peers.stop();
  });

  afterAll(() => app.close());

  const client = (path: string, options: ConnectOptions = {}): WsClient =>
    peers.connect(path, options);

  // a cut of the connection after 300–1,600 bytes one way: mid-frame, mid-handshake, mid-welcome
  const byteCut = fc.option(
    fc.record({
      direction: fc.constantFrom<'up' | 'down'>('up', 'down'),
      bytes: fc.integer({ min: 300, max: 1600 }),
    }),
    { nil: undefined },
  );

  it(`delivers ${N} messages each way sent all at once, once and in order, to one session, while connections are cut mid-frame (seed ${SEED})`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(byteCut, { minLength: 5, maxLength: 30 }),
        async (cuts) => {
          sessions.length = 0;
          proxy.schedule(cuts);
          const peer = client('/both');
          const got = collect(peer);
          for (const text of numbered('c')) peer.send(text);
          await within(
            until(
              () => got.length >= N && (sessionOf(peer)?.got.length ?? 0) >= N,
              'all delivered',
              10_000,
            ),
            12_000,
            () =>
              `client got ${got.length}, server got ${sessionOf(peer)?.got.length}`,
          );
          await sessionOf(peer)!.done.promise;
          expect(got).toEqual(numbered('s'));
          expect(sessionOf(peer)!.got).toEqual(numbered('c'));
          // one session did the work: any other is one whose welcome never got through
          expect(sessions.filter((session) => session.got.length)).toEqual([
            sessionOf(peer),
          ]);
          peer.close();
        },
      ),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
  }, 120_000);

  it(`delivers ${N} messages each way once, in order, to one session, while the connection is cut every 20–80 messages (seed ${SEED})`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 20, max: 80 }), {
          minLength: 100,
          maxLength: 100,
        }),
        fc.array(byteCut, { maxLength: 30 }),
        async (gaps, cuts) => {
          sessions.length = 0;
          proxy.schedule(cuts);
          const accepted = proxy.accepted;
          let count = 0;
          let next = gaps.shift()!;
          delivered = () => {
            if (++count < next) return;
            next += gaps.shift() ?? Infinity;
            proxy.cutAll();
          };
          const peer = client('/turns');
          const got = collect(peer);
          // the next message goes once the last answer came: one in flight each way
          peer.on('message', () => {
            delivered();
            if (got.length < N) peer.send(`c${got.length + 1}`);
          });
          peer.send('c1');
          await within(
            until(
              () => (sessionOf(peer)?.got.length ?? 0) >= N && got.length >= N,
              'all delivered',
              20_000,
            ),
            22_000,
            () =>
              `client got ${got.length}, server got ${sessionOf(peer)?.got.length}`,
          );
          await sessionOf(peer)!.done.promise;
          delivered = () => undefined;
          expect(got).toEqual(numbered('s'));
          expect(sessionOf(peer)!.got).toEqual(numbered('c'));
          // one session did the work: any other is one whose welcome never got through
          expect(sessions.filter((session) => session.got.length)).toEqual([
            sessionOf(peer),
          ]);
          // a connection for every 80 messages at most
          expect(proxy.accepted - accepted).toBeGreaterThanOrEqual(
            (2 * N) / 80,
          );
          peer.close();
        },
      ),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
  }, 120_000);

  it.each(['work', 'plain-work'])(
    'answers a request whose reply was lost once, processed once (/%s)',
    async (path) => {
      const gate = new Deferred();
      held.set('order-1', gate);
      const peer = client(`/${path}`);
      const reply = peer.request('order-1', { timeout: 10_000 });
      await until(
        () => processed.get('order-1') === 1,
        'the request is processed',
      );
      // the reply is lost with the connection: the client retries on a new one
      proxy.cutAll();
      gate.resolve();
      expect((await reply).text).toBe('done order-1');
      expect(processed.get('order-1')).toBe(1);
      expect(proxy.accepted).toBeGreaterThan(1);
    },
  );

  it('keeps what it sends while the client is away up to replayBuffer, then send() waits until the client is back', async () => {
    sent.go = new Deferred();
    const peer = client('/small-buffer');
    const got = collect(peer);
    await until(() => peer.state === 'open', 'the session opens');
    proxy.refuse();
    proxy.cutAll();
    await until(
      () => peer.state === 'reconnecting',
      'the client sees the drop',
    );
    sent.go.resolve();
    // sends that find room resolve at once, with no connection: let them all run
    await new Promise(setImmediate);
    // 1 KiB holds 9 frames of some 105 bytes; the 10th crosses the bound: it is kept, and its
    // send() waits for acks
    expect(sent.count).toBe(9);
    proxy.allow();
    await until(
      () => got.length === 100 && sent.count === 100,
      'every message, after the resume',
    );
    expect(got).toEqual(
      Array.from({ length: 100 }, (_, i) => `${i + 1}`.padStart(100, '.')),
    );
  });

  it('closes with 1013 a connected client that does not ack while send() waits for room', async () => {
    const ws = new WebSocket(proxy.url('/no-acks'));
    ws.on('error', () => undefined);
    const [code, reason] = (await within(
      once(ws, 'close'),
      5000,
      'the close',
    )) as [number, Buffer];
    expect(code).toBe(1013);
    expect(reason.toString()).toBe('Slow consumer');
  });

  it('notices a half-open connection by its ping, and resumes on a new one', async () => {
    const peer = client('/both', { ping: { interval: 100, timeout: 100 } });
    const states: string[] = [];
    peer.on('state', (state) => states.push(state));
    const resumed = new Deferred<boolean>();
    peer.on('session', (welcome) => welcome.resumed && resumed.resolve(true));
    await until(
      () => sessions.length === 1 && peer.state === 'open',
      'the session opens',
    );
    proxy.blackhole();
    expect(await within(resumed.promise, 10_000, 'a resume')).toBe(true);
    expect(states).toEqual(['open', 'reconnecting', 'open']);
    expect(sessions).toHaveLength(1);
  });
});
