import {
  CanActivate,
  Controller,
  ExecutionContext,
  INestApplication,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket as NetSocket } from 'node:net';
import WebSocket from 'ws';
import {
  Socket,
  WebSocketContext,
  WebSocketDisconnect,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import type { Welcome } from 'nestjs-ws-endpoints/client';
import { Deferred } from './utils/deferred';
import { FaultProxy } from './utils/fault-proxy';
import { rawRequest, upgradeRequest } from './utils/raw-http';
import { platforms, startApp } from './utils/test-app';
import { until } from './utils/until';
import { within } from './utils/within';

const TIMEOUT = 3000;
/** A resume token's shape: `<session id>.<secret>`, 16 random bytes each in base64url. */
const TOKEN = /^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{22}$/;
const random22 = () => randomBytes(16).toString('base64url');

/** One run of a handler: its socket, what it received, and the error that ended its loop. */
interface Run {
  socket: WebSocketContext;
  endpoint: string;
  /** `socket.resumeFailed` as the handler saw it when it started. */
  resumeFailed: boolean;
  received: string[];
  /** Resolves with what `receive()` threw when the loop ended. */
  ended: Deferred<unknown>;
  isEnded: boolean;
}

/** Every handler run of the current test, in the order they started. */
const runs: Run[] = [];
/** How often the user guard ran, and the users it refuses. */
const guard = { calls: 0, banned: new Set<string>() };

/** Echoes each message as `echo:<text>` until `receive()` throws; records everything. */
async function serve(socket: WebSocketContext, endpoint: string) {
  const run: Run = {
    socket,
    endpoint,
    resumeFailed: socket.resumeFailed,
    received: [],
    ended: new Deferred<unknown>(),
    isEnded: false,
  };
  runs.push(run);
  let end: unknown;
  try {
    for (;;) {
      const message = await socket.receive();
      run.received.push(message.text);
      await socket.send(`echo:${message.text}`);
    }
  } catch (error) {
    end = error;
  }
  run.isEnded = true;
  run.ended.resolve(end);
}

/** An HTTP guard that takes the user from `X-User` (401 without one, or for a banned one). */
class UserGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    guard.calls++;
    const request = context
      .switchToHttp()
      .getRequest<{ headers: Record<string, string>; user?: unknown }>();
    const id = request.headers['x-user'];
    if (!id) throw new UnauthorizedException('Who are you?');
    if (guard.banned.has(id)) throw new UnauthorizedException('Banned');
    request.user = { id };
    return true;
  }
}

@Controller('reliable')
class ReliableController {
  @Ws('echo', { reliable: { resumeWindow: 60_000, replayBuffer: 64 * 1024 } })
  echo(@Socket() socket: WebSocketContext) {
    return serve(socket, 'echo');
  }

  @Ws('other', { reliable: true })
  other(@Socket() socket: WebSocketContext) {
    return serve(socket, 'other');
  }

  @Ws('brief', { reliable: { resumeWindow: 300 } })
  brief(@Socket() socket: WebSocketContext) {
    return serve(socket, 'brief');
  }

  @Ws('guarded', { reliable: { resumeWindow: 60_000 } })
  @UseGuards(UserGuard)
  guarded(@Socket() socket: WebSocketContext) {
    return serve(socket, 'guarded');
  }
}

/** A frame of the envelope as the client received it. */
interface EnvelopeFrame {
  kind: string;
  seq: number;
  text: string;
}

/**
 * A raw `ws` client that speaks the envelope by hand, so that every sequence number and ack is
 * the test's own: the welcome, a queue of the server's other frames, the acks apart (they come
 * on a timer, between the messages).
 */
class EnvelopePeer {
  readonly welcome: Promise<Welcome>;
  readonly closed: Promise<{ code: number; reason: string }>;
  /** The seqs of the server's `a` frames, in order. */
  readonly acks: number[] = [];
  private readonly queue: EnvelopeFrame[] = [];
  private readonly wakers = new Set<() => void>();
  private isClosed = false;

  constructor(readonly ws: WebSocket) {
    const welcome = new Deferred<Welcome>();
    this.welcome = within(welcome.promise, TIMEOUT, `a welcome from ${ws.url}`);
    // attached at once: the welcome may ride with the 101
    ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      const newline = text.indexOf('\n');
      const [kind, seq = '0'] = text.slice(0, newline).split(' ');
      const frame = { kind, seq: Number(seq), text: text.slice(newline + 1) };
      if (kind === 'w') welcome.resolve(JSON.parse(frame.text) as Welcome);
      else if (kind === 'a') this.acks.push(frame.seq);
      else this.queue.push(frame);
      this.wake();
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.once('close', (code: number, reason: Buffer) => {
        this.isClosed = true;
        this.wake();
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  /** Sends the client's message `seq`. */
  send(seq: number, text: string): void {
    this.ws.send(`m ${seq}\n${text}`);
  }

  /** The server's next frame other than the welcome and acks. */
  next(): Promise<EnvelopeFrame> {
    let waker = () => undefined as void;
    const found = new Promise<EnvelopeFrame>((resolve, reject) => {
      waker = () => {
        const frame = this.queue.shift();
        if (frame) resolve(frame);
        else if (this.isClosed)
          reject(new Error(`${this.ws.url} closed before a frame arrived`));
        else return;
        this.wakers.delete(waker);
      };
      this.wakers.add(waker);
      waker();
    });
    return within(
      found,
      TIMEOUT,
      `a frame from ${this.ws.url}; acks so far: ${this.acks.join()}`,
    ).finally(() => this.wakers.delete(waker));
  }

  /** What arrived and no `next()` has taken. */
  get unread(): EnvelopeFrame[] {
    return [...this.queue];
  }

  /** Drops the TCP connection without a close frame, as a network that vanished does. */
  drop(): Promise<unknown> {
    (this.ws as unknown as { _socket: NetSocket })._socket.destroy();
    return this.closed;
  }

  dispose(): void {
    this.ws.terminate();
  }

  private wake(): void {
    for (const waker of this.wakers) waker();
  }
}

/** The refusal of an upgrade: its status and the message of its JSON body. */
async function refusal(
  app: INestApplication,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; message: unknown }> {
  const response = await within(
    rawRequest(app, upgradeRequest(path, headers)),
    TIMEOUT,
    `an answer to the upgrade to ${path}`,
  );
  let message: unknown;
  try {
    message = (JSON.parse(response.body) as { message: unknown }).message;
  } catch {
    message = response.body;
  }
  return { status: response.status, message };
}

const resumePath = (path: string, token: string, ack = 0) =>
  `${path}?ws_resume=${encodeURIComponent(token)}&ws_ack=${ack}`;

describe.each(platforms)('reliable sessions resume (%s)', (platform) => {
  let app: INestApplication;
  let appClosed: boolean;
  let url: string;
  const peers: EnvelopePeer[] = [];

  beforeEach(async () => {
    runs.length = 0;
    guard.calls = 0;
    guard.banned.clear();
    ({ app } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({})],
        controllers: [ReliableController],
      },
      undefined,
      platform,
    ));
    appClosed = false;
    url = (await app.getUrl()).replace(/^http/, 'ws');
  });

  afterEach(async () => {
    for (const peer of peers.splice(0)) peer.dispose();
    if (!appClosed) await app.close();
  });

  function peer(path: string, headers: Record<string, string> = {}) {
    const made = new EnvelopePeer(new WebSocket(url + path, { headers }));
    peers.push(made);
    return made;
  }

  /** A session on `path` whose first message was echoed, then dropped: suspended on the server. */
  async function suspended(path = '/reliable/echo', headers = {}) {
    const first = peer(path, headers);
    const welcome = await first.welcome;
    first.send(1, 'A');
    expect(await first.next()).toEqual({ kind: 'm', seq: 1, text: 'echo:A' });
    const run = runs[runs.length - 1];
    await first.drop();
    await until(
      () => run.socket.state === 'reconnecting',
      'the server noticed the drop',
    );
    return { welcome, run };
  }

  /** Resumes with `token` and checks that the session continues where it was. */
  async function resumes(
    path: string,
    welcome: Welcome,
    run: Run,
    headers = {},
  ) {
    const next = peer(resumePath(path, welcome.token!, 1), headers);
    const resumed = await next.welcome;
    expect(resumed).toMatchObject({
      session: welcome.session,
      resumed: true,
      ack: 1,
    });
    next.send(2, 'B');
    expect(await next.next()).toEqual({ kind: 'm', seq: 2, text: 'echo:B' });
    expect(runs).toEqual([run]);
    expect(run.received).toEqual(['A', 'B']);
    return next;
  }

  describe('who may resume', () => {
    it('says welcome with a session id and a resume token that names it', async () => {
      const client = peer('/reliable/echo');
      const welcome = await client.welcome;
      expect(welcome).toEqual({
        session: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
        reliable: true,
        resumed: false,
        token: expect.stringMatching(TOKEN),
        ack: 0,
        resumeWindow: 60_000,
        replayBuffer: 64 * 1024,
      });
      expect(welcome.token!.split('.')[0]).toBe(welcome.session);
    });

    it.each([
      ['no dot', 'nonsense'],
      ['a short secret', () => `${random22()}.${random22().slice(1)}`],
      ['a long secret', () => `${random22()}.${random22()}A`],
      [
        'a character outside base64url',
        () => `${random22()}.${random22().slice(1)}+`,
      ],
      ['an empty token', ''],
    ])('refuses a malformed token (%s) with 400', async (_name, token) => {
      const text = typeof token === 'function' ? token() : token;
      expect(await refusal(app, resumePath('/reliable/echo', text))).toEqual({
        status: 400,
        message: 'Invalid resume token',
      });
      expect(runs).toEqual([]);
    });

    it.each([
      ['a wrong secret', 'echo', random22, 'echo', {}],
      ['a token of another endpoint', 'echo', undefined, 'other', {}],
      [
        'a token of another user',
        'guarded',
        undefined,
        'guarded',
        { 'X-User': 'bob' },
      ],
    ] as const)(
      'refuses %s with 403, and the session still resumes, its handler run once',
      async (_name, path, secret, presentedAt, headers) => {
        const owner = path === 'guarded' ? { 'X-User': 'ada' } : {};
        const { welcome, run } = await suspended(`/reliable/${path}`, owner);
        const token = secret
          ? `${welcome.session}.${secret()}`
          : welcome.token!;
        const attempt = () =>
          refusal(app, resumePath(`/reliable/${presentedAt}`, token, 1), {
            ...owner,
            ...headers,
          });
        // twice: a refused attempt changes nothing that the next one sees
        expect([await attempt(), await attempt()]).toEqual([
          { status: 403, message: 'This resume token is not yours' },
          { status: 403, message: 'This resume token is not yours' },
        ]);
        expect(run.socket.state).toBe('reconnecting');
        expect(run.socket.signal.aborted).toBe(false);

        await resumes(`/reliable/${path}`, welcome, run, owner);
        expect(run.socket.resumed).toBe(true);
      },
    );

    it('gives a new token on each connection; the one used no longer resumes', async () => {
      const { welcome, run } = await suspended();
      const next = await resumes('/reliable/echo', welcome, run);
      const second = await next.welcome;
      expect(second.token).toMatch(TOKEN);
      expect(second.token).not.toBe(welcome.token);
      expect(second.token!.split('.')[0]).toBe(welcome.session);

      expect(
        await refusal(app, resumePath('/reliable/echo', welcome.token!, 2)),
      ).toEqual({ status: 403, message: 'This resume token is not yours' });
      // the live connection did not notice
      next.send(3, 'C');
      expect(await next.next()).toEqual({ kind: 'm', seq: 3, text: 'echo:C' });
      expect(runs).toHaveLength(1);
    });

    it('still resumes with the last token when the welcome carrying the new one was lost', async () => {
      const { welcome, run } = await suspended();
      // the resume's connection drops before the client reads anything on it
      const lost = peer(resumePath('/reliable/echo', welcome.token!, 1));
      const unseen = await lost.welcome;
      await lost.drop();
      await until(
        () => run.socket.state === 'reconnecting',
        'the drop is seen',
      );
      // the client has only the last token: it still resumes, and the unseen one too would
      const next = await resumes('/reliable/echo', welcome, run);
      // once the client has spoken on the new connection, the older tokens are spent
      for (const token of [welcome.token!, unseen.token!]) {
        expect(
          await refusal(app, resumePath('/reliable/echo', token, 2)),
        ).toEqual({
          status: 403,
          message: 'This resume token is not yours',
        });
      }
      next.send(3, 'C');
      expect(await next.next()).toEqual({ kind: 'm', seq: 3, text: 'echo:C' });
    });

    it('runs the guards again on resume: a refusal leaves the session suspended', async () => {
      const { welcome, run } = await suspended('/reliable/guarded', {
        'X-User': 'ada',
      });
      expect(guard.calls).toBe(1);
      guard.banned.add('ada');
      expect(
        await refusal(app, resumePath('/reliable/guarded', welcome.token!, 1), {
          'X-User': 'ada',
        }),
      ).toEqual({ status: 401, message: 'Banned' });
      expect(
        await refusal(app, resumePath('/reliable/guarded', welcome.token!, 1)),
      ).toEqual({ status: 401, message: 'Who are you?' });
      expect(guard.calls).toBe(3);
      expect(run.socket.state).toBe('reconnecting');
      expect(run.socket.resumed).toBe(false);

      guard.banned.clear();
      await resumes('/reliable/guarded', welcome, run, { 'X-User': 'ada' });
      expect(guard.calls).toBe(4);
    });

    it('answers 500 resume attempts with wrong secrets for a live session with 403, and the session goes on', async () => {
      const client = peer('/reliable/echo');
      const welcome = await client.welcome;
      const attempts = Array.from({ length: 500 }, () =>
        rawRequest(
          app,
          upgradeRequest(
            resumePath('/reliable/echo', `${welcome.session}.${random22()}`),
          ),
        ).then(({ status }) => status),
      );
      const statuses = await within(
        Promise.all(attempts),
        20_000,
        'answers to 500 resume attempts',
      );
      expect(statuses.filter((status) => status !== 403)).toEqual([]);
      expect(client.ws.readyState).toBe(WebSocket.OPEN);
      expect(runs).toHaveLength(1);
      expect(runs[0].socket.state).toBe('open');
      client.send(1, 'still here');
      expect(await client.next()).toEqual({
        kind: 'm',
        seq: 1,
        text: 'echo:still here',
      });
    }, 30_000);
  });

  describe('a token the instance no longer has', () => {
    it('ends the session when the window runs out: signal aborted, receive() rejected with 1006', async () => {
      const client = peer('/reliable/brief');
      const welcome = await client.welcome;
      expect(welcome.resumeWindow).toBe(300);
      await until(() => runs.length === 1, 'the handler ran');
      const [run] = runs;
      const aborted = once(run.socket.signal, 'abort');
      await client.drop();
      await until(
        () => run.socket.state === 'reconnecting',
        'the server noticed the drop',
      );
      expect(run.socket.signal.aborted).toBe(false);
      expect(run.isEnded).toBe(false);

      await within(aborted, TIMEOUT, 'the signal aborts when the window ends');
      const error = await within(
        run.ended.promise,
        TIMEOUT,
        'the handler ends',
      );
      expect(error).toBeInstanceOf(WebSocketDisconnect);
      expect((error as WebSocketDisconnect).code).toBe(1006);
      expect(run.socket.closeCode).toBe(1006);
      expect(run.socket.state).toBe('closed');
      expect((run.socket.signal.reason as WebSocketDisconnect).code).toBe(1006);
    });

    it('accepts an expired token as a new session, whose handler sees resumeFailed', async () => {
      const first = peer('/reliable/brief');
      const welcome = await first.welcome;
      await until(() => runs.length === 1, 'the handler ran');
      const aborted = once(runs[0].socket.signal, 'abort');
      await first.drop();
      await within(aborted, TIMEOUT, 'the session expires');

      const second = peer(resumePath('/reliable/brief', welcome.token!, 0));
      const next = await second.welcome;
      expect(next).toMatchObject({ resumed: false, ack: 0 });
      expect(next.session).not.toBe(welcome.session);
      expect(next.token).toMatch(TOKEN);
      await until(() => runs.length === 2, 'the handler ran again');
      expect(runs.map((run) => run.resumeFailed)).toEqual([false, true]);
      expect(runs[1].socket.resumeFailed).toBe(true);
      expect(runs[1].socket.resumed).toBe(false);
      second.send(1, 'X');
      expect(await second.next()).toEqual({
        kind: 'm',
        seq: 1,
        text: 'echo:X',
      });
    });

    it('accepts an unknown well-formed token as a new session, whose handler sees resumeFailed', async () => {
      const client = peer(
        resumePath('/reliable/echo', `${random22()}.${random22()}`, 7),
      );
      expect(await client.welcome).toMatchObject({ resumed: false, ack: 0 });
      await until(() => runs.length === 1, 'the handler ran');
      expect(runs[0].resumeFailed).toBe(true);
      client.send(1, 'X');
      expect(await client.next()).toEqual({
        kind: 'm',
        seq: 1,
        text: 'echo:X',
      });
    });
  });

  describe('while suspended', () => {
    it('keeps the session reconnecting, and delivers what the handler sent meanwhile after the resume, once, in order', async () => {
      const { welcome, run } = await suspended();
      expect(run.socket.state).toBe('reconnecting');
      expect(run.socket.signal.aborted).toBe(false);
      expect(run.isEnded).toBe(false);

      const sends = ['s1', 's2', 's3'].map((text) => run.socket.send(text));
      const next = peer(resumePath('/reliable/echo', welcome.token!, 1));
      expect(await next.welcome).toMatchObject({
        session: welcome.session,
        resumed: true,
        ack: 1,
      });
      await within(Promise.all(sends), TIMEOUT, 'the sends while suspended');
      expect([await next.next(), await next.next(), await next.next()]).toEqual(
        [
          { kind: 'm', seq: 2, text: 's1' },
          { kind: 'm', seq: 3, text: 's2' },
          { kind: 'm', seq: 4, text: 's3' },
        ],
      );
      next.send(2, 'B');
      // the next frame is the echo: nothing was sent twice in between
      expect(await next.next()).toEqual({ kind: 'm', seq: 5, text: 'echo:B' });
      expect(next.unread).toEqual([]);
      expect(run.received).toEqual(['A', 'B']);
      expect(runs).toHaveLength(1);
      expect(run.socket.state).toBe('open');
      expect(run.socket.resumed).toBe(true);
    });

    it('sends again what the client has not acked, from the ack it presents', async () => {
      const first = peer('/reliable/echo');
      const welcome = await first.welcome;
      first.send(1, 'A');
      first.send(2, 'B');
      expect([await first.next(), await first.next()]).toEqual([
        { kind: 'm', seq: 1, text: 'echo:A' },
        { kind: 'm', seq: 2, text: 'echo:B' },
      ]);
      const [run] = runs;
      await first.drop();
      await until(
        () => run.socket.state === 'reconnecting',
        'the server noticed the drop',
      );

      // the client says it got up to 1: echo:B comes again, echo:A does not
      const next = peer(resumePath('/reliable/echo', welcome.token!, 1));
      expect(await next.welcome).toMatchObject({ resumed: true, ack: 2 });
      expect(await next.next()).toEqual({ kind: 'm', seq: 2, text: 'echo:B' });
      next.send(3, 'C');
      expect(await next.next()).toEqual({ kind: 'm', seq: 3, text: 'echo:C' });
      expect(run.received).toEqual(['A', 'B', 'C']);
    });

    it("takes the client's unacked messages sent again with their seq once: what it had is dropped", async () => {
      const { port } = new URL(await app.getUrl());
      const proxy = await FaultProxy.start({ port: Number(port) });
      try {
        const first = new EnvelopePeer(
          new WebSocket(proxy.url('/reliable/echo')),
        );
        peers.push(first);
        const welcome = await first.welcome;
        first.send(1, 'A');
        await until(() => runs[0]?.received.length === 1, 'the handler got A');
        const [run] = runs;
        // B is held by the network and lost with the connection: the server never sees it
        proxy.stall();
        first.send(2, 'B');
        await until(() => proxy.stats[0].up.held > 0, 'the proxy holds B');
        proxy.cutAll();
        proxy.resume();
        await until(
          () => run.socket.state === 'reconnecting',
          'the server noticed the cut',
        );
        expect(run.received).toEqual(['A']);

        const next = peer(resumePath('/reliable/echo', welcome.token!, 0));
        expect(await next.welcome).toMatchObject({ resumed: true, ack: 1 });
        // echo:A was never acked by the client: it comes again first
        expect(await next.next()).toEqual({
          kind: 'm',
          seq: 1,
          text: 'echo:A',
        });
        // a client that missed the server's ack sends everything it has not seen acked
        next.send(1, 'A');
        next.send(2, 'B');
        next.send(3, 'C');
        expect([await next.next(), await next.next()]).toEqual([
          { kind: 'm', seq: 2, text: 'echo:B' },
          { kind: 'm', seq: 3, text: 'echo:C' },
        ]);
        await until(() => next.acks.includes(3), 'the server acks up to 3');
        expect(run.received).toEqual(['A', 'B', 'C']);
        expect(next.unread).toEqual([]);
        expect(runs).toHaveLength(1);
      } finally {
        await proxy.close();
      }
    });
  });

  describe('ends that are not drops', () => {
    it('ends the session on a close frame from the client: no suspension, the token starts a new session', async () => {
      const client = peer('/reliable/echo');
      const welcome = await client.welcome;
      await until(() => runs.length === 1, 'the handler ran');
      const [run] = runs;
      client.ws.close(1000);
      expect(await within(client.closed, TIMEOUT, 'the close')).toEqual({
        code: 1000,
        reason: '',
      });
      const error = await within(
        run.ended.promise,
        TIMEOUT,
        'the handler ends',
      );
      expect((error as WebSocketDisconnect).code).toBe(1000);
      expect(run.socket.state).toBe('closed');
      expect(run.socket.closeCode).toBe(1000);

      const next = peer(resumePath('/reliable/echo', welcome.token!, 0));
      const second = await next.welcome;
      expect(second.resumed).toBe(false);
      expect(second.session).not.toBe(welcome.session);
      await until(() => runs.length === 2, 'a new handler ran');
      expect(runs[1].resumeFailed).toBe(true);
    });

    it('settles app.close() promptly while a session is suspended, and aborts its signal', async () => {
      const { run } = await suspended();
      const aborted = once(run.socket.signal, 'abort');
      appClosed = true;
      await within(app.close(), 2000, 'app.close() with a suspended session');
      await within(aborted, TIMEOUT, 'the signal aborts');
      expect((run.socket.signal.reason as WebSocketDisconnect).code).toBe(1001);
      await within(run.ended.promise, TIMEOUT, 'the handler ends');
      expect(run.socket.state).toBe('closed');
    });

    it.each([
      ['no header line', 'garbage'],
      ['a message out of order', 'm 5\n'],
      ['a header with no newline', 'm 1'],
    ])(
      'closes with 1002 on a frame that breaks the envelope (%s)',
      async (_name, frame) => {
        const client = peer('/reliable/echo');
        await client.welcome;
        await until(() => runs.length === 1, 'the handler ran');
        client.ws.send(frame);
        expect(await within(client.closed, TIMEOUT, 'the close')).toEqual({
          code: 1002,
          reason: 'Invalid envelope',
        });
        const error = await within(
          runs[0].ended.promise,
          TIMEOUT,
          'the handler ends',
        );
        expect((error as WebSocketDisconnect).code).toBe(1002);
        expect(runs[0].socket.closeCode).toBe(1002);
        expect(runs[0].received).toEqual([]);
      },
    );
  });
});
