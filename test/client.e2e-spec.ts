import {
  CanActivate,
  Controller,
  ExecutionContext,
  INestApplication,
  NotFoundException,
  UseGuards,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import { IsInt, IsString, Min } from 'class-validator';
import { once } from 'node:events';
import { get } from 'node:http';
import { createServer, type Server, type Socket as NetSocket } from 'node:net';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import {
  connect,
  type ClientState,
  type ConnectOptions,
  RequestError,
  type Welcome,
  type WsClient,
} from 'nestjs-ws-endpoints/client';
import type { FaultProxy } from './utils/fault-proxy';
import { ProxiedClients } from './utils/proxied-clients';
import { startApp } from './utils/test-app';
import { until } from './utils/until';
import { within } from './utils/within';

const TIMEOUT = 3000;

/** One session a handler ran: its query and the texts it received. */
interface Session {
  query: Record<string, unknown>;
  received: string[];
}

/** Every session of the current test, in the order they started. */
const sessions: Session[] = [];
/** How each new session ends: the next entry closes it with that code, or returns at once (1000). */
const endings: Array<number | 'return'> = [];
/** How often each request reached a handler, by its payload. */
const processed = new Map<string, number>();
/** The `token` query parameter of every upgrade, resumes included, as the guard read it. */
const tokens: unknown[] = [];

/** Records the token of each upgrade, as an app reads one: `request.query.token`. */
class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context
      .switchToHttp()
      .getRequest<{ query: Record<string, unknown> }>();
    tokens.push(request.query.token ?? request.query.access_token);
    return true;
  }
}

class OrderDto {
  @IsString()
  item!: string;

  @IsInt()
  @Min(1)
  quantity!: number;
}

/**
 * Ends the session as `endings` says, or records what it receives. Requests: `missing` fails
 * with 404, `never` gets no answer, anything else `done <text>`.
 */
async function serve(socket: WebSocketContext): Promise<void> {
  const session: Session = { query: { ...socket.query }, received: [] };
  sessions.push(session);
  const ending = endings.shift();
  if (ending === 'return') return;
  if (ending !== undefined) {
    await socket.close(ending, `closed with ${ending}`);
    return;
  }
  for await (const message of socket) {
    session.received.push(message.text);
    if (message.id === undefined) continue;
    processed.set(message.text, (processed.get(message.text) ?? 0) + 1);
    if (message.text === 'never') continue;
    if (message.text === 'missing') {
      await socket.replyError(message, new NotFoundException('nope'));
    } else {
      await socket.reply(message, `done ${message.text}`);
    }
  }
}

@Controller()
class ClientController {
  @Ws('reliable', { reliable: true, heartbeat: false })
  @UseGuards(TokenGuard)
  reliable(@Socket() socket: WebSocketContext) {
    return serve(socket);
  }

  @Ws('requests', { requests: true, heartbeat: false })
  @UseGuards(TokenGuard)
  requests(@Socket() socket: WebSocketContext) {
    return serve(socket);
  }

  /** Sends one, two, three; then returns (1000) with `?end=1`, or waits for the close. */
  @Ws('feed', { reliable: true, heartbeat: false })
  async feed(@Socket() socket: WebSocketContext) {
    for (const text of ['one', 'two', 'three']) await socket.send(text);
    if (socket.query.end !== '1') await socket.closed;
  }

  /** Takes orders through the pipes: a request they refuse is answered 400. */
  @Ws('orders', { reliable: true, heartbeat: false })
  @UsePipes(new ValidationPipe())
  async orders(@Socket() socket: WebSocketContext) {
    for (;;) await socket.send(await socket.receive(OrderDto));
  }
}

/** Retries at once (a 0 ms backoff): a retry that should not happen would happen right away. */
const base: ConnectOptions = {
  WebSocket: WebSocket as never,
  reconnect: { initialDelay: 1, maxDelay: 1 },
  ping: false,
};

/** What a client said, from the moment it was made. */
interface Recorded {
  states: ClientState[];
  welcomes: Welcome[];
  messages: string[];
  closed: Promise<{ code: number; reason: string }>;
}

function record(client: WsClient): Recorded {
  const recorded: Recorded = {
    states: [],
    welcomes: [],
    messages: [],
    closed: new Promise((resolve) => client.on('close', resolve)),
  };
  client.on('state', (state) => recorded.states.push(state));
  client.on('session', (welcome) => recorded.welcomes.push(welcome));
  client.on('message', (message) => recorded.messages.push(message.text));
  return recorded;
}

/** The client's close event; fails loudly when it does not come. */
const closeOf = (recorded: Recorded) =>
  within(recorded.closed, TIMEOUT, 'the client to close');

/** Resolves once the client has said welcome `count` times in all. */
const sessionsOpened = (client: WsClient, recorded: Recorded, count: number) =>
  until(
    () => recorded.welcomes.length >= count && client.state === 'open',
    `welcome #${count}`,
    TIMEOUT,
  );

/** `promise`'s rejection; fails when it resolves. */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await within(promise, TIMEOUT, 'a rejection');
  } catch (error) {
    return error;
  }
  throw new Error('It resolved');
}

describe('nestjs-ws-endpoints/client', () => {
  let app: INestApplication;
  const peers = new ProxiedClients(base);
  let proxy: FaultProxy;
  const cleanups: Array<() => unknown> = [];

  beforeAll(async () => {
    ({ app } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [ClientController],
    }));
  });

  beforeEach(async () => {
    sessions.length = 0;
    endings.length = 0;
    processed.clear();
    tokens.length = 0;
    proxy = await peers.start(app);
  });

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
    await peers.stop();
  });

  afterAll(() => app.close());

  const client = (path: string, options: ConnectOptions = {}): WsClient =>
    peers.connect(path, options);

  /**
   * A full HTTP round trip through the proxy, after which the accepted count is read: a retry
   * the client had scheduled (with its 0 ms backoff) would have been accepted before it.
   */
  async function roundTrip(): Promise<void> {
    const response = await within(
      new Promise<{ statusCode?: number; resume(): void }>((resolve, reject) =>
        get(
          `http://127.0.0.1:${proxy.port}/nothing`,
          { agent: false },
          resolve,
        ).on('error', reject),
      ),
      TIMEOUT,
      'an HTTP answer through the proxy',
    );
    response.resume();
    expect(response.statusCode).toBe(404);
  }

  /** Asserts that the client made no connection since `accepted`, and stays closed. */
  async function expectNoNewConnection(
    peer: WsClient,
    accepted: number,
  ): Promise<void> {
    await roundTrip();
    expect(proxy.accepted).toBe(accepted + 1); // the round trip's
    expect(peer.state).toBe('closed');
  }

  describe('reconnection', () => {
    it('retries with no limit by default, and connects once the server is reachable', async () => {
      let calls = 0;
      proxy.refuse();
      const peer = client('/reliable', {
        reconnect: { initialDelay: 1, maxDelay: 2 },
        token: () => String(++calls),
      });
      const recorded = record(peer);
      await until(() => calls >= 30, '30 tries', TIMEOUT);
      expect(recorded.states).not.toContain('closed');
      expect(proxy.accepted).toBe(0);
      proxy.allow();
      await sessionsOpened(peer, recorded, 1);
      expect(recorded.states.at(-1)).toBe('open');
    });

    it('gives up after `retries` failed tries after a drop: closed, with a close event', async () => {
      let calls = 0;
      const peer = client('/reliable', {
        reconnect: { initialDelay: 1, maxDelay: 1, retries: 2 },
        token: () => String(++calls),
      });
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      proxy.refuse();
      proxy.cutAll();
      expect(await closeOf(recorded)).toEqual({
        code: 1006,
        reason: 'Gave up reconnecting',
      });
      // the first connection, then two tries
      expect(calls).toBe(3);
      expect(peer.state).toBe('closed');
      expect(recorded.states).toEqual(['open', 'reconnecting', 'closed']);
      proxy.allow();
      await expectNoNewConnection(peer, 1);
      expect(calls).toBe(3);
    });

    it('does not reconnect with `reconnect: false`', async () => {
      const peer = client('/reliable', { reconnect: false });
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      proxy.cutAll();
      expect(await closeOf(recorded)).toEqual({ code: 1006, reason: '' });
      expect(recorded.states).toEqual(['open', 'closed']);
      await expectNoNewConnection(peer, 1);
    });

    it('does not retry a token callback that throws with `reconnect: false`', async () => {
      let calls = 0;
      const peer = client('/reliable', {
        reconnect: false,
        token: () => {
          if (++calls === 1) throw new Error('no token yet');
          return 'late';
        },
      });
      const recorded = record(peer);
      const outcome = await within(
        Promise.race([
          recorded.closed.then(() => 'closed'),
          until(() => peer.state === 'open', 'open', TIMEOUT).then(
            () => 'open',
          ),
        ]),
        TIMEOUT,
        'the client to close or open',
      );
      expect(outcome).toBe('closed');
      expect(calls).toBe(1);
    });
  });

  describe("the browser's online and offline events", () => {
    // Node has no such events: a global EventTarget stands in for the browser's window
    const window = new EventTarget();
    const global = globalThis as {
      addEventListener?: unknown;
      removeEventListener?: unknown;
    };
    beforeEach(() => {
      global.addEventListener = window.addEventListener.bind(window);
      global.removeEventListener = window.removeEventListener.bind(window);
    });
    afterEach(() => {
      delete global.addEventListener;
      delete global.removeEventListener;
    });

    it("tries at once when the browser is back online, whatever the backoff's delay", async () => {
      let calls = 0;
      proxy.refuse();
      const peer = client('/reliable', {
        reconnect: { initialDelay: 600_000, maxDelay: 600_000 },
        token: () => String(++calls),
      });
      const recorded = record(peer);
      await until(
        () => calls === 1 && peer.state === 'connecting',
        'the first try fails',
      );
      proxy.allow();
      window.dispatchEvent(new Event('online'));
      await sessionsOpened(peer, recorded, 1);
      expect(calls).toBe(2);
    });

    it('pings at once when the browser goes offline, and replaces a connection that does not answer', async () => {
      const peer = client('/reliable', {
        ping: { interval: 600_000, timeout: 100 },
      });
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      proxy.blackhole();
      window.dispatchEvent(new Event('offline'));
      await until(
        () => peer.state === 'reconnecting',
        'the dead connection is replaced',
      );
      await sessionsOpened(peer, recorded, 2);
      expect(recorded.welcomes.at(-1)?.resumed).toBe(true);
    });
  });

  describe('close codes', () => {
    it.each([1008, 1003, 4403])(
      'stops when the server closes with %i',
      async (code) => {
        endings.push(code);
        const peer = client('/reliable');
        const recorded = record(peer);
        expect(await closeOf(recorded)).toEqual({
          code,
          reason: `closed with ${code}`,
        });
        expect(recorded.states).toEqual(['open', 'closed']);
        await expectNoNewConnection(peer, 1);
        expect(sessions).toHaveLength(1);
      },
    );

    it.each([1011, 1012, 1013])(
      'reconnects when the server closes with %i',
      async (code) => {
        endings.push(code);
        const peer = client('/reliable');
        const recorded = record(peer);
        await sessionsOpened(peer, recorded, 2);
        expect(recorded.states).toEqual(['open', 'reconnecting', 'open']);
        expect(recorded.welcomes.map((w) => w.resumed)).toEqual([false, false]);
        expect(proxy.accepted).toBe(2);
        expect(sessions).toHaveLength(2);
      },
    );

    it('reconnects after a drop (1006) and resumes the session', async () => {
      const peer = client('/reliable');
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      proxy.cutAll();
      await sessionsOpened(peer, recorded, 2);
      expect(recorded.states).toEqual(['open', 'reconnecting', 'open']);
      expect(recorded.welcomes.map((w) => w.resumed)).toEqual([false, true]);
      expect(proxy.accepted).toBe(2);
      expect(sessions).toHaveLength(1);
    });

    it('ends when the server closes with a code in neither list (1000: the handler returned)', async () => {
      endings.push('return');
      const peer = client('/reliable');
      const recorded = record(peer);
      expect(await closeOf(recorded)).toEqual({ code: 1000, reason: '' });
      await expectNoNewConnection(peer, 1);
    });

    it('reconnects on a code of `retryOn` once `stopOn` no longer has it', async () => {
      endings.push(4403);
      const peer = client('/reliable', {
        stopOn: [],
        retryOn: [[4400, 4499]],
      });
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 2);
      expect(recorded.states).toEqual(['open', 'reconnecting', 'open']);
      expect(proxy.accepted).toBe(2);
    });

    it('stops on a code of `stopOn` even when `retryOn` has it', async () => {
      endings.push(1012);
      const peer = client('/reliable', { stopOn: [1012] });
      const recorded = record(peer);
      expect(await closeOf(recorded)).toEqual({
        code: 1012,
        reason: 'closed with 1012',
      });
      await expectNoNewConnection(peer, 1);
    });

    it('ends after a drop when `retryOn` does not have 1006', async () => {
      const peer = client('/reliable', { retryOn: [1011] });
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      proxy.cutAll();
      expect(await closeOf(recorded)).toEqual({ code: 1006, reason: '' });
      await expectNoNewConnection(peer, 1);
    });
  });

  describe('token', () => {
    it('calls `token` before every (re)connect and sends its value as ?token=', async () => {
      let calls = 0;
      endings.push(1012); // the first session ends: the next connection is a new one
      const peer = client('/reliable', { token: () => `t${++calls}` });
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 2);
      proxy.cutAll(); // the second resumes
      await sessionsOpened(peer, recorded, 3);
      expect(tokens).toEqual(['t1', 't2', 't3']);
      expect(sessions.map((s) => s.query.token)).toEqual(['t1', 't2']);
      expect(calls).toBe(3);
    });

    it('names the parameter after `tokenParam`', async () => {
      const peer = client('/reliable', {
        token: async () => 'secret',
        tokenParam: 'access_token',
      });
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      expect(sessions[0].query).toEqual({ access_token: 'secret' });
    });

    it('counts a token callback that throws or rejects as a failed try, and tries again', async () => {
      let calls = 0;
      const peer = client('/reliable', {
        token: () => {
          calls++;
          if (calls === 1) throw new Error('no token yet');
          if (calls === 2) return Promise.reject(new Error('still none'));
          return Promise.resolve('third time');
        },
      });
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      expect(calls).toBe(3);
      expect(tokens).toEqual(['third time']);
      expect(proxy.accepted).toBe(1);
    });

    it('gives up when the token callback keeps failing past `retries`', async () => {
      let calls = 0;
      const peer = client('/reliable', {
        reconnect: { initialDelay: 1, maxDelay: 1, retries: 1 },
        token: () => {
          calls++;
          throw new Error('no token');
        },
      });
      const recorded = record(peer);
      expect(await closeOf(recorded)).toEqual({
        code: 1006,
        reason: 'Gave up reconnecting',
      });
      expect(calls).toBe(2);
      await expectNoNewConnection(peer, 0);
    });
  });

  describe('connectTimeout', () => {
    let server: Server;
    const sockets: NetSocket[] = [];

    beforeEach(async () => {
      server = createServer((socket) => {
        socket.on('error', () => undefined);
        // read (and ignore) the upgrade request, so that the client's close is seen
        socket.resume();
        sockets.push(socket);
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
    });

    afterEach(async () => {
      for (const socket of sockets.splice(0)) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    });

    it('gives up on an upgrade that is never answered after connectTimeout, and tries again', async () => {
      const { port } = server.address() as AddressInfo;
      const peer = connect(`ws://127.0.0.1:${port}/silent`, {
        ...base,
        connectTimeout: 200,
      });
      peers.track(peer);
      await until(() => sockets.length >= 1, 'the first connection', TIMEOUT);
      const opened = Date.now();
      // the client, not the server, ends the first connection
      await within(once(sockets[0], 'close'), TIMEOUT, 'the first try to end');
      expect(Date.now() - opened).toBeGreaterThanOrEqual(150);
      await until(() => sockets.length >= 2, 'a second try', TIMEOUT);
      // it has never been open: it is still connecting
      expect(peer.state).toBe('connecting');
    });
  });

  describe('offline queue', () => {
    it('queues `messages` sends while offline, refuses the next with a RangeError, and delivers them once, in order', async () => {
      proxy.refuse();
      const peer = client('/reliable', { queue: { messages: 3 } });
      const recorded = record(peer);
      for (const text of ['a', 'b', 'c']) peer.send(text);
      expect(() => peer.send('d')).toThrow(RangeError);
      expect(() => peer.send('d')).toThrow(
        'The client queue is full: wait until the connection is back.',
      );
      expect(peer.queued).toBe(3);
      proxy.allow();
      await sessionsOpened(peer, recorded, 1);
      // acked: the server has them, and the client forgot them
      await until(() => peer.queued === 0, 'the server acks', TIMEOUT);
      expect(sessions).toHaveLength(1);
      expect(sessions[0].received).toEqual(['a', 'b', 'c']);
      // room again
      peer.send('e');
      await until(() => sessions[0].received.length === 4, 'e', TIMEOUT);
      expect(sessions[0].received).toEqual(['a', 'b', 'c', 'e']);
    });

    it('queues up to `bytes` while offline and refuses a send past it', async () => {
      proxy.refuse();
      const peer = client('/reliable', { queue: { bytes: 10 } });
      const recorded = record(peer);
      peer.send('aaaa');
      peer.send('bbbb');
      peer.send('cc'); // 10 bytes: full
      expect(() => peer.send('d')).toThrow(RangeError);
      expect(peer.queued).toBe(3);
      proxy.allow();
      await sessionsOpened(peer, recorded, 1);
      await until(() => peer.queued === 0, 'the server acks', TIMEOUT);
      expect(sessions[0].received).toEqual(['aaaa', 'bbbb', 'cc']);
    });

    // '€' is one UTF-16 unit and 3 bytes of UTF-8
    it('counts the bound in bytes of UTF-8, not in characters', () => {
      proxy.refuse();
      const peer = client('/reliable', { queue: { bytes: 10 } });
      peer.send('€€€'); // 9 bytes
      expect(() => peer.send('€')).toThrow(RangeError); // 12 bytes
    });

    it('rejects a request past the bound with a RangeError', async () => {
      proxy.refuse();
      const peer = client('/reliable', { queue: { messages: 1 } });
      peer.send('a');
      const error = await rejectionOf(peer.request('b'));
      expect(error).toBeInstanceOf(RangeError);
      expect(peer.queued).toBe(1);
    });
  });

  describe('request()', () => {
    it('rejects with 408 when no reply comes within `timeout`', async () => {
      const peer = client('/reliable');
      const error = await rejectionOf(peer.request('never', { timeout: 100 }));
      expect(error).toBeInstanceOf(RequestError);
      expect(error).toMatchObject({
        status: 408,
        message: 'Request timed out',
      });
      expect(processed.get('never')).toBe(1);
    });

    it("rejects with the status and message of the server's replyError()", async () => {
      const peer = client('/reliable');
      const error = await rejectionOf(peer.request('missing'));
      expect(error).toBeInstanceOf(RequestError);
      expect(error).toMatchObject({
        name: 'RequestError',
        status: 404,
        message: 'nope',
      });
    });

    it('resolves with the reply', async () => {
      const peer = client('/reliable');
      const reply = await within(peer.request('book'), TIMEOUT, 'the reply');
      expect(reply.text).toBe('done book');
    });

    it('rejects with 400 and what the pipes said when receive(Dto) refuses the request', async () => {
      const peer = client('/orders');
      const recorded = record(peer);
      const error = await rejectionOf(peer.request({ item: 5, quantity: 0 }));
      expect(error).toBeInstanceOf(RequestError);
      expect(error).toMatchObject({
        status: 400,
        message: 'item must be a string; quantity must not be less than 1',
      });
      // the session goes on: a valid order is taken
      peer.send({ item: 'book', quantity: 2 });
      await until(() => recorded.messages.length === 1, 'the order', TIMEOUT);
      expect(JSON.parse(recorded.messages[0])).toEqual({
        item: 'book',
        quantity: 2,
      });
    });

    it('rejects pending requests with 503 when the client closes', async () => {
      const peer = client('/reliable');
      const pending = peer.request('never');
      await until(
        () => processed.get('never') === 1,
        'the request arrives',
        TIMEOUT,
      );
      peer.close();
      const error = await rejectionOf(pending);
      expect(error).toBeInstanceOf(RequestError);
      expect(error).toMatchObject({
        status: 503,
        message: 'The client is closed (1000).',
      });
    });
  });

  describe('messages and states', () => {
    it("yields the server's messages in order with for await, and ends when the server ends the client", async () => {
      const peer = client('/feed?end=1');
      const got: string[] = [];
      const loop = (async () => {
        for await (const message of peer) got.push(message.text);
      })();
      await within(loop, TIMEOUT, 'the loop to end');
      expect(got).toEqual(['one', 'two', 'three']);
      expect(peer.state).toBe('closed');
    });

    it('ends a for await loop when the client closes', async () => {
      const peer = client('/feed');
      const got: string[] = [];
      const loop = (async () => {
        for await (const message of peer) {
          got.push(message.text);
          if (got.length === 3) peer.close();
        }
      })();
      await within(loop, TIMEOUT, 'the loop to end');
      expect(got).toEqual(['one', 'two', 'three']);
    });

    it('ends a waiting for await loop when the client closes', async () => {
      const peer = client('/reliable');
      const recorded = record(peer);
      const got: string[] = [];
      const loop = (async () => {
        for await (const message of peer) got.push(message.text);
      })();
      await sessionsOpened(peer, recorded, 1);
      peer.close();
      await within(loop, TIMEOUT, 'the loop to end');
      expect(got).toEqual([]);
    });

    it('goes connecting → open → reconnecting → open on a drop → closed', async () => {
      const peer = client('/reliable');
      expect(peer.state).toBe('connecting');
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      proxy.cutAll();
      await sessionsOpened(peer, recorded, 2);
      peer.close();
      expect(recorded.states).toEqual([
        'open',
        'reconnecting',
        'open',
        'closed',
      ]);
      expect(await closeOf(recorded)).toEqual({ code: 1000, reason: '' });
    });
  });

  describe('a server that breaks the envelope', () => {
    let wss: WebSocketServer;
    /** What the raw server sends on each connection. */
    let script: string[];
    /** The close code of each connection the raw server had, as it saw it. */
    let closes: number[];
    let connections: number;

    beforeEach(async () => {
      const seen: number[] = (closes = []);
      connections = 0;
      wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
      wss.on('connection', (ws) => {
        connections++;
        ws.on('error', () => undefined);
        ws.on('close', (code) => seen.push(code));
        for (const frame of script) ws.send(frame);
      });
      await once(wss, 'listening');
    });

    afterEach(async () => {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => wss.close(resolve));
    });

    /** A client of the raw server. */
    function rawClient(): { peer: WsClient; recorded: Recorded } {
      const { port } = wss.address() as AddressInfo;
      const peer = connect(`ws://127.0.0.1:${port}/`, base);
      peers.track(peer);
      return { peer, recorded: record(peer) };
    }

    const welcome = (reliable: boolean) =>
      'w\n' +
      JSON.stringify({
        session: 's1',
        reliable,
        resumed: false,
        ack: 0,
        ...(reliable ? { token: 's1.secret', resumeWindow: 60_000 } : {}),
      });

    it.each([
      ['a frame with no header', ['garbage']],
      ['a welcome that is not JSON', ['w\n{not json']],
      ['a kind the server may not send', [welcome(true), 'q 1 abc\nhi']],
      [
        'messages out of sequence (reliable)',
        [welcome(true), 'm 1\na', 'm 3\nc'],
      ],
    ])('closes with 1002 and stops on %s', async (_what, frames) => {
      script = frames;
      const { peer, recorded } = rawClient();
      expect(await closeOf(recorded)).toEqual({ code: 1002, reason: '' });
      await until(
        () => closes.length === 1,
        'the server sees the close',
        TIMEOUT,
      );
      expect(closes).toEqual([1002]);
      // a connection of our own opens: had the client retried (at once), it would be there first
      const { port } = wss.address() as AddressInfo;
      const control = new WebSocket(`ws://127.0.0.1:${port}/`);
      control.on('error', () => undefined);
      await within(once(control, 'open'), TIMEOUT, 'the control connection');
      control.terminate();
      expect(connections).toBe(2);
      expect(peer.state).toBe('closed');
      expect(recorded.messages).toEqual(frames.includes('m 1\na') ? ['a'] : []);
    });

    // the welcome is the first frame of a connection, and the only one
    it('closes with 1002 on a message before the welcome', async () => {
      script = ['m 5\nearly', welcome(true)];
      const { peer, recorded } = rawClient();
      const outcome = await within(
        Promise.race([
          recorded.closed,
          until(() => peer.state === 'open', 'open', TIMEOUT).then(
            () => 'open',
          ),
        ]),
        TIMEOUT,
        'the client to close or open',
      );
      expect(outcome).toEqual({ code: 1002, reason: '' });
      expect(recorded.messages).toEqual([]);
    });
  });

  describe('a requests-only endpoint', () => {
    it('works without reliable mode: welcome says reliable: false', async () => {
      const peer = client('/requests');
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      expect(recorded.welcomes).toEqual([
        {
          session: expect.any(String),
          reliable: false,
          resumed: false,
          ack: 0,
        },
      ]);
      peer.send('hello');
      const reply = await within(peer.request('book'), TIMEOUT, 'the reply');
      expect(reply.text).toBe('done book');
      expect(sessions[0].received).toEqual(['hello', 'book']);
    });

    it('delivers a request made offline on reconnect, answered once', async () => {
      const peer = client('/requests');
      const recorded = record(peer);
      await sessionsOpened(peer, recorded, 1);
      proxy.refuse();
      proxy.cutAll();
      await until(() => peer.state === 'reconnecting', 'the drop', TIMEOUT);
      const reply = peer.request('offline');
      let answers = 0;
      void reply.then(() => answers++);
      expect(peer.queued).toBe(1);
      expect(processed.get('offline')).toBeUndefined();
      proxy.allow();
      expect((await within(reply, TIMEOUT, 'the reply')).text).toBe(
        'done offline',
      );
      expect(processed.get('offline')).toBe(1);
      expect(answers).toBe(1);
      expect(peer.queued).toBe(0);
      expect(sessions).toHaveLength(2);
      expect(sessions[1].received).toEqual(['offline']);
    });
  });
});
