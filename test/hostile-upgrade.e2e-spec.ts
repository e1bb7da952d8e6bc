import {
  CanActivate,
  Controller,
  Get,
  INestApplication,
  Injectable,
  NestInterceptor,
  Param,
  Type,
  UnauthorizedException,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { NEVER, Observable, of } from 'rxjs';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
  WsEndpointsModuleOptions,
} from 'nestjs-ws-endpoints';
import { connectWs } from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { encodeFrame, Opcode } from './utils/frames';
import {
  plainRequest,
  RawConnection,
  rawRequest,
  upgradeRequest,
} from './utils/raw-http';
import { ServerSockets } from './utils/server-sockets';
import { until } from './utils/until';
import { CapturedLogs, platforms, startApp } from './utils/test-app';

/** The trailing bytes a hostile peer writes behind its upgrade request, in the same write. */
const JUNK = Buffer.alloc(1024, 'x');
/** How many refused peers are in flight at once. */
const BATCH = 200;
/** ms a peer in a batch waits for each step: the server has the whole batch to answer. */
const BUSY_TIMEOUT = 5000;

let slowRoute = { entered: new Deferred(), release: new Deferred() };
let pendingGuard = new Deferred();
let lateGuard = { entered: new Deferred(), settle: new Deferred<boolean>() };
const ran: string[] = [];

class UnauthorizedGuard implements CanActivate {
  canActivate(): boolean {
    throw new UnauthorizedException();
  }
}

class RefusingGuard implements CanActivate {
  canActivate() {
    return false;
  }
}

class CrashingGuard implements CanActivate {
  canActivate(): boolean {
    throw new Error('guard crashed');
  }
}

/** A guard waiting on something that never answers (a hung auth service). */
class NeverGuard implements CanActivate {
  canActivate(): Promise<boolean> {
    pendingGuard.resolve();
    return new Promise<boolean>(() => undefined);
  }
}

/** A guard that says yes once the test lets it, after the handshake timed out. */
class LateGuard implements CanActivate {
  canActivate(): Promise<boolean> {
    lateGuard.entered.resolve();
    return lateGuard.settle.promise;
  }
}

@Injectable()
class NeverInterceptor implements NestInterceptor {
  intercept(): Observable<unknown> {
    return NEVER;
  }
}

/** A caching interceptor that answers without calling the handler. */
@Injectable()
class CachedInterceptor implements NestInterceptor {
  intercept(): Observable<unknown> {
    return of('cached');
  }
}

async function echo(socket: WebSocketContext) {
  for await (const message of socket) await socket.send(message);
}

@Controller()
class PlainController {
  @Get('plain')
  plain() {
    return 'plain';
  }

  @Get('slow')
  async slow() {
    slowRoute.entered.resolve();
    await slowRoute.release.promise;
    return 'slow';
  }
}

@Controller('hostile')
class HostileController {
  @Ws('echo')
  echo(@Socket() socket: WebSocketContext) {
    return echo(socket);
  }

  @Ws('unauthorized')
  @UseGuards(UnauthorizedGuard)
  unauthorized() {
    ran.push('unauthorized');
  }

  @Ws('refused')
  @UseGuards(RefusingGuard)
  refused() {
    ran.push('refused');
  }

  @Ws('crash')
  @UseGuards(CrashingGuard)
  crash() {
    ran.push('crash');
  }
}

@Controller('o')
class RoomsController {
  @Ws(':room', { allowedOrigins: '*' })
  async room(@Param('room') room: string, @Socket() socket: WebSocketContext) {
    ran.push(`room ${room}`);
    await socket.send(`room ${room}`);
  }

  // declared after ':room', with the default policy ('same-host')
  @Ws('admin')
  async admin(@Socket() socket: WebSocketContext) {
    ran.push('admin');
    await socket.send('admin');
  }
}

@Controller('origins')
class OriginsController {
  @Ws('global-regexp', { allowedOrigins: /^http:\/\/good\.example$/g })
  async globalRegExp(@Socket() socket: WebSocketContext) {
    await socket.send('global-regexp');
  }

  @Ws('async-false', { allowedOrigins: async () => false })
  async asyncFalse(@Socket() socket: WebSocketContext) {
    await socket.send('async-false');
  }

  @Ws('async-true', { allowedOrigins: async () => true })
  async asyncTrue(@Socket() socket: WebSocketContext) {
    await socket.send('async-true');
  }

  @Ws('throws', {
    allowedOrigins: () => {
      throw new Error('origin check crashed');
    },
  })
  async throws(@Socket() socket: WebSocketContext) {
    await socket.send('throws');
  }

  @Ws('rejects', {
    allowedOrigins: async () => {
      throw new Error('origin check rejected');
    },
  })
  async rejects(@Socket() socket: WebSocketContext) {
    await socket.send('rejects');
  }
}

@Controller('handshake')
class HandshakeController {
  @Ws('echo')
  echo(@Socket() socket: WebSocketContext) {
    return echo(socket);
  }

  @Ws('never-guard')
  @UseGuards(NeverGuard)
  neverGuard() {
    ran.push('never-guard');
  }

  @Ws('never-interceptor')
  @UseInterceptors(NeverInterceptor)
  neverInterceptor() {
    ran.push('never-interceptor');
  }

  @Ws('cached')
  @UseInterceptors(CachedInterceptor)
  cached() {
    ran.push('cached');
  }

  @Ws('late-guard')
  @UseGuards(LateGuard)
  lateGuard() {
    ran.push('late-guard');
  }
}

describe.each(platforms)('hostile upgrade requests on %s', (platform) => {
  let app: INestApplication;
  let logs: CapturedLogs;
  let sockets: ServerSockets;
  const peers: RawConnection[] = [];

  async function open(options: WsEndpointsModuleOptions, controllers: Type[]) {
    ({ app, logs } = await startApp(
      { imports: [WsEndpointsModule.forRoot(options)], controllers },
      undefined,
      platform,
    ));
    sockets = new ServerSockets(app);
  }

  /** A raw peer that never ends its side; destroyed after the test. */
  async function peer(timeout?: number): Promise<RawConnection> {
    const connection = await RawConnection.open(app, {
      allowHalfOpen: true,
      timeout,
    });
    peers.push(connection);
    return connection;
  }

  /** The server answered, ended its side and closed its socket of `connection`. */
  async function expectReleased(connection: RawConnection) {
    await connection.whenEnded();
    await sockets.closed(connection.localPort);
  }

  /** Sends an upgrade request; the answer, and for a 101 the handler's first message. */
  async function tryUpgrade(path: string, headers: Record<string, string>) {
    const connection = await peer();
    await connection.write(upgradeRequest(path, headers));
    const response = await connection.nextResponse();
    if (response.status !== 101) return { status: response.status };
    const frame = await connection.nextFrame();
    return { status: response.status, handler: frame.payload.toString() };
  }

  async function expectServing(path = '/hostile/echo') {
    const client = await connectWs(app, path, { timeout: 2000 });
    client.send('still serving');
    expect((await client.next()).text).toBe('still serving');
    await client.close();
  }

  beforeEach(() => {
    ran.length = 0;
  });

  afterEach(() => {
    for (const connection of peers.splice(0)) connection.destroy();
  });

  describe('an upgrade pipelined behind a slow request when its time runs out', () => {
    beforeAll(() =>
      open({ handshakeTimeout: 300 }, [PlainController, HostileController]),
    );
    beforeEach(() => {
      slowRoute = { entered: new Deferred(), release: new Deferred() };
    });
    afterAll(async () => {
      sockets.dispose();
      await app.close();
    });

    it("answers 503 after the slow request's own answer, which it leaves whole", async () => {
      const connection = await peer();
      await connection.write(
        plainRequest('/slow') + upgradeRequest('/hostile/echo'),
      );
      await slowRoute.entered.promise;
      await until(
        () => logs.find('warn', 'within handshakeTimeout').length > 0,
        'the handshake timeout ran out',
      );
      slowRoute.release.resolve();
      const first = await connection.nextResponse();
      expect([first.status, first.body]).toEqual([200, 'slow']);
      expect((await connection.nextResponse()).status).toBe(503);
      await expectReleased(connection);
    });
  });

  describe('pipelined requests', () => {
    beforeAll(() => open({}, [PlainController, HostileController]));
    beforeEach(() => {
      slowRoute = { entered: new Deferred(), release: new Deferred() };
    });
    afterAll(async () => {
      sockets.dispose();
      await app.close();
    });

    it('answers a keep-alive GET and the upgrade pipelined behind it in order, then echoes on the upgraded socket', async () => {
      const connection = await peer();
      await connection.write(
        plainRequest('/plain') + upgradeRequest('/hostile/echo'),
      );
      const first = await connection.nextResponse();
      expect([first.status, first.body]).toEqual([200, 'plain']);
      const second = await connection.nextResponse();
      expect(second.statusLine).toBe('HTTP/1.1 101 Switching Protocols');
      await connection.write(
        encodeFrame({ opcode: Opcode.Text, payload: 'pipelined' }),
      );
      const frame = await connection.nextFrame();
      expect([frame.opcode, frame.payload.toString()]).toEqual([
        Opcode.Text,
        'pipelined',
      ]);
      await expectServing();
    });

    it.each([2, 50])(
      'answers %i keep-alive requests and the upgrade pipelined behind them in order',
      async (count) => {
        const connection = await peer();
        await connection.write(
          plainRequest('/plain').repeat(count) +
            upgradeRequest('/hostile/echo'),
        );
        for (let i = 0; i < count; i++)
          expect((await connection.nextResponse()).body).toBe('plain');
        const upgrade = await connection.nextResponse();
        expect(upgrade.statusLine).toBe('HTTP/1.1 101 Switching Protocols');
        await connection.write(
          encodeFrame({ opcode: Opcode.Text, payload: 'after many' }),
        );
        expect((await connection.nextFrame()).payload.toString()).toBe(
          'after many',
        );
        await expectServing();
      },
    );

    it('waits for a slow plain route before answering the upgrade pipelined behind it', async () => {
      const connection = await peer();
      await connection.write(
        plainRequest('/slow') + upgradeRequest('/hostile/echo'),
      );
      await slowRoute.entered.promise;
      slowRoute.release.resolve();
      const first = await connection.nextResponse();
      expect([first.status, first.body]).toEqual([200, 'slow']);
      const second = await connection.nextResponse();
      expect(second.statusLine).toBe('HTTP/1.1 101 Switching Protocols');
      await connection.write(
        encodeFrame({ opcode: Opcode.Text, payload: 'late' }),
      );
      expect((await connection.nextFrame()).payload.toString()).toBe('late');
      await expectServing();
    });

    it('answers a pipelined upgrade that a guard refuses with 401 after the GET, then closes the socket', async () => {
      const connection = await peer();
      await connection.write(
        plainRequest('/plain') + upgradeRequest('/hostile/unauthorized'),
      );
      const first = await connection.nextResponse();
      expect([first.status, first.body]).toEqual([200, 'plain']);
      const second = await connection.nextResponse();
      expect(second.status).toBe(401);
      await expectReleased(connection);
      expect(ran).not.toContain('unauthorized');
      await expectServing();
    });
  });

  describe('refused upgrades release their socket', () => {
    beforeAll(() => open({}, [HostileController]));
    afterAll(async () => {
      sockets.dispose();
      await app.close();
    });

    it.each([
      [
        'a guard throws UnauthorizedException',
        401,
        '/hostile/unauthorized',
        {},
        2000,
      ],
      ['a guard returns false', 403, '/hostile/refused', {}, 300],
      [
        'allowedOrigins refuses the Origin',
        403,
        '/hostile/echo',
        { Origin: 'http://evil.example' },
        300,
      ],
      ['no @Ws route matches the path', 404, '/nowhere', {}, 2000],
      [
        'Sec-WebSocket-Key is missing',
        400,
        '/hostile/echo',
        { 'Sec-WebSocket-Key': null },
        300,
      ],
      [
        'Sec-WebSocket-Version is unsupported',
        400,
        '/hostile/echo',
        { 'Sec-WebSocket-Version': '12' },
        300,
      ],
      ['a guard throws a plain Error', 500, '/hostile/crash', {}, 300],
    ] as const)(
      'when %s, answers %i and closes the socket of each peer that never ends its side',
      async (_case, status, path, headers, count) => {
        const baseline = await sockets.count();
        const request = Buffer.concat([
          Buffer.from(upgradeRequest(path, headers)),
          JUNK,
        ]);
        for (let started = 0; started < count; started += BATCH) {
          await Promise.all(
            Array.from(
              { length: Math.min(BATCH, count - started) },
              async () => {
                const connection = await peer(BUSY_TIMEOUT);
                await connection.write(request);
                expect((await connection.nextResponse()).status).toBe(status);
                await expectReleased(connection);
              },
            ),
          );
        }
        expect(await sockets.count()).toBe(baseline);
        expect(ran).toEqual([]);
      },
    );

    it('names the supported versions in the 400 for an unsupported Sec-WebSocket-Version (RFC 6455 §4.4)', async () => {
      const response = await rawRequest(
        app,
        upgradeRequest('/hostile/echo', { 'Sec-WebSocket-Version': '12' }),
      );
      expect(response.status).toBe(400);
      expect(response.headers['sec-websocket-version']).toBe('13, 8');
    });

    it('answers a plain GET on a @Ws route with 426 and Upgrade: websocket', async () => {
      const response = await rawRequest(
        app,
        plainRequest('/hostile/echo', { Connection: 'close' }),
      );
      expect(response.status).toBe(426);
      expect(response.headers.upgrade).toBe('websocket');
    });
  });

  describe('refused upgrades while the app drains', () => {
    let hold = new Deferred();
    let closing: Promise<void> | undefined;

    @Controller('hold')
    class HoldingController {
      @Ws('on')
      async on(@Socket() socket: WebSocketContext) {
        await socket.send('holding');
        await new Promise((resolve) =>
          socket.signal.addEventListener('abort', resolve, { once: true }),
        );
        await hold.promise;
      }
    }

    afterEach(async () => {
      sockets.dispose();
      hold.resolve();
      await (closing ?? app.close());
    });

    it('answers 503 during app.close() and closes the socket of peers that never end their side', async () => {
      hold = new Deferred();
      closing = undefined;
      await open({ shutdownTimeout: 10_000 }, [HoldingController]);
      const holder = await connectWs(app, '/hold/on');
      expect((await holder.next()).text).toBe('holding');
      closing = app.close();
      expect((await holder.closed).code).toBe(1001);
      const request = Buffer.concat([
        Buffer.from(upgradeRequest('/hold/on')),
        JUNK,
      ]);
      await Promise.all(
        Array.from({ length: 20 }, async () => {
          const connection = await peer();
          await connection.write(request);
          expect((await connection.nextResponse()).status).toBe(503);
          await expectReleased(connection);
        }),
      );
    });
  });

  describe('the origin policy of the handler that runs', () => {
    beforeAll(() => open({}, [RoomsController, OriginsController]));
    afterAll(async () => {
      sockets.dispose();
      await app.close();
    });

    const evil = { Origin: 'http://evil.example', Host: 'localhost' };

    it("refuses /o/admin from another origin with 403: the admin endpoint's 'same-host' applies, not ':room's '*'", async () => {
      expect(await tryUpgrade('/o/admin', evil)).toEqual({ status: 403 });
      expect(ran).not.toContain('admin');
    });

    it('never lets a percent-encoded /o/%61dmin reach the admin handler from another origin', async () => {
      // Fastify decodes the path and runs the admin endpoint, whose policy refuses; Express
      // matches the path as written, and runs ':room' (for room 'admin') under its own '*'
      const result = await tryUpgrade('/o/%61dmin', evil);
      expect(ran).not.toContain('admin');
      if (result.status === 101) expect(result.handler).toBe('room admin');
      else expect([403, 404]).toContain(result.status);
    });

    it("accepts /o/lobby from another origin under ':room's '*'", async () => {
      expect(await tryUpgrade('/o/lobby', evil)).toEqual({
        status: 101,
        handler: 'room lobby',
      });
    });

    it('gives the same answer to every request from an allowed origin under a RegExp with the g flag', async () => {
      const results = [];
      for (let i = 0; i < 4; i++) {
        results.push(
          await tryUpgrade('/origins/global-regexp', {
            Origin: 'http://good.example',
          }),
        );
      }
      expect(results).toEqual(
        Array(4).fill({ status: 101, handler: 'global-regexp' }),
      );
    });

    it('refuses with 403 when an async allowedOrigins function resolves false', async () => {
      expect(await tryUpgrade('/origins/async-false', evil)).toEqual({
        status: 403,
      });
    });

    it('accepts when an async allowedOrigins function resolves true', async () => {
      expect(await tryUpgrade('/origins/async-true', evil)).toEqual({
        status: 101,
        handler: 'async-true',
      });
    });

    it.each([
      ['throws', '/origins/throws'],
      ['rejects', '/origins/rejects'],
    ])(
      'answers 500 when the allowedOrigins function %s, logs it once and keeps serving',
      async (_case, path) => {
        const errors = logs.count('error');
        expect(await tryUpgrade(path, evil)).toEqual({ status: 500 });
        expect(await tryUpgrade('/o/lobby', evil)).toEqual({
          status: 101,
          handler: 'room lobby',
        });
        expect(logs.count('error') - errors).toBe(1);
      },
    );
  });

  describe('nothing before the upgrade waits forever (handshakeTimeout)', () => {
    beforeEach(() => {
      pendingGuard = new Deferred();
      lateGuard = { entered: new Deferred(), settle: new Deferred<boolean>() };
    });

    describe('with handshakeTimeout: 300', () => {
      const options: WsEndpointsModuleOptions = { handshakeTimeout: 300 };
      beforeAll(() => open(options, [HandshakeController]));
      afterAll(async () => {
        sockets.dispose();
        await app.close();
      });

      it.each([
        ['a guard that never settles', '/handshake/never-guard'],
        [
          'an interceptor that never subscribes',
          '/handshake/never-interceptor',
        ],
      ])(
        'answers %s with 503 "Handshake timed out", then closes the socket',
        async (_case, path) => {
          const connection = await peer();
          await connection.write(upgradeRequest(path));
          const response = await connection.nextResponse();
          expect(response.status).toBe(503);
          expect(JSON.parse(response.body)).toMatchObject({
            statusCode: 503,
            message: 'Handshake timed out',
          });
          await expectReleased(connection);
          expect(ran).toEqual([]);
        },
      );

      it('answers 500 when an interceptor answers without calling the handler, logged once', async () => {
        const errors = logs.count('error');
        const connection = await peer();
        await connection.write(upgradeRequest('/handshake/cached'));
        expect((await connection.nextResponse()).status).toBe(500);
        await expectReleased(connection);
        await expectServing('/handshake/echo');
        expect(logs.count('error') - errors).toBe(1);
        expect(ran).toEqual([]);
      });

      it('never upgrades a socket already answered 503 when its guard says yes too late', async () => {
        const connection = await peer();
        await connection.write(upgradeRequest('/handshake/late-guard'));
        await lateGuard.entered.promise;
        expect((await connection.nextResponse()).status).toBe(503);
        await expectReleased(connection);
        lateGuard.settle.resolve(true);
        await expectServing('/handshake/echo');
        expect(connection.unread.length).toBe(0);
        expect(ran).toEqual([]);
      });
    });

    describe('on app.close()', () => {
      let closing: Promise<void> | undefined;
      afterEach(async () => {
        sockets.dispose();
        await (closing ?? app.close());
      });

      it('resolves app.close() while a guard never settles, answering that peer 503 and closing its socket', async () => {
        closing = undefined;
        await open({ shutdownTimeout: 1000 }, [HandshakeController]);
        const connection = await peer();
        await connection.write(upgradeRequest('/handshake/never-guard'));
        await pendingGuard.promise;
        closing = app.close();
        expect((await connection.nextResponse()).status).toBe(503);
        await expectReleased(connection);
        await closing;
      }, 10_000);
    });
  });
});
