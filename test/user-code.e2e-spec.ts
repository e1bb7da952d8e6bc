import {
  CallHandler,
  CanActivate,
  Catch,
  Controller,
  ExceptionFilter,
  INestApplication,
  Injectable,
  NestInterceptor,
  Param,
  PipeTransform,
  UnauthorizedException,
  UseFilters,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { WsException } from '@nestjs/websockets';
import {
  catchError,
  merge,
  mergeMap,
  Observable,
  of,
  Subject,
  take,
  throwError,
} from 'rxjs';
import {
  Socket,
  WebSocketContext,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import {
  connectWs,
  ConnectOptions,
  expectRejected,
  WsTestClient,
} from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { CapturedLogs, platforms, startApp } from './utils/test-app';
import { within } from './utils/within';

/**
 * An error whose `message` cannot be read: `error.message`, `String(error)`, its `stack` (which
 * plain Node formats from the message; jest's source-map support would not) and a logger that
 * reads any of them throw again. Only jest's own reporting, when it is the caller, gets an answer,
 * so that a test this error escapes from is reported instead of crashing the whole file.
 */
class UnreadableError extends Error {
  constructor() {
    super();
    Object.defineProperty(this, 'stack', {
      get: unreadable('UnreadableError: unreadable'),
      configurable: true,
    });
  }
}
Object.defineProperty(UnreadableError.prototype, 'message', {
  get: unreadable('unreadable'),
});

function unreadable(forJest: string): () => string {
  return () => {
    const caller = (new Error().stack ?? '').split('\n')[2] ?? '';
    if (JEST_INTERNALS.test(caller)) return forJest;
    throw new Error('the message getter failed');
  };
}
const JEST_INTERNALS =
  /node_modules[\\/](jest-[^\\/]+|@jest[\\/][^\\/]+|expect|pretty-format)[\\/]/;

const INTERNAL = { code: 1011, reason: 'Internal server error' };

/** What user code throws, and how a session it ends is closed. */
const THROWN: [string, () => unknown, { code: number; reason: string }][] = [
  [
    'new WsException(undefined)',
    () => new WsException(undefined as unknown as string),
    { code: 1008, reason: '' },
  ],
  [
    'new WsException(null)',
    () => new WsException(null as unknown as string),
    { code: 1008, reason: '' },
  ],
  [
    'new WsException({ id: 10n })',
    () => new WsException({ id: 10n }),
    { code: 1008, reason: '' },
  ],
  ['Object.create(null)', () => Object.create(null), INTERNAL],
  ["the string 'a string'", () => 'a string', INTERNAL],
  ['undefined', () => undefined, INTERNAL],
  [
    'an Error whose message getter throws',
    () => new UnreadableError(),
    INTERNAL,
  ],
  ['the BigInt 10n', () => 10n, INTERNAL],
];

/** What a handler hands to `send()` that has no JSON form. */
/** Values with no JSON form, and what `send()` rejects with: a TypeError, or what `toJSON` threw. */
const UNSENDABLE: [string, () => unknown, ErrorConstructor][] = [
  ['10n', () => 10n, TypeError],
  [
    'an object whose toJSON throws',
    () => ({
      toJSON() {
        throw new RangeError('no JSON for you');
      },
    }),
    RangeError,
  ],
  [
    'a circular object',
    () => {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      return circular;
    },
    TypeError,
  ],
  ["Symbol('s')", () => Symbol('s'), TypeError],
  ['undefined', () => undefined, TypeError],
  ['a function', () => () => undefined, TypeError],
];

/** What the user code of the running test throws. */
let thrown: () => unknown = () => undefined;
let unsendable: () => unknown = () => undefined;
let sendOutcome = new Deferred<unknown>();
const firstMessage = new Subject<void>();

class ThrowingGuard implements CanActivate {
  canActivate(): boolean {
    throw thrown();
  }
}

class UnauthorizedGuard implements CanActivate {
  canActivate(): boolean {
    throw new UnauthorizedException();
  }
}

class ThrowingPipe implements PipeTransform {
  transform(): unknown {
    throw thrown();
  }
}

@Injectable()
class ThrowingInterceptor implements NestInterceptor {
  intercept(): Observable<unknown> {
    throw thrown();
  }
}

/** Errors once the session is running: on the first message the handler receives. */
@Injectable()
class FailingSessionInterceptor implements NestInterceptor {
  intercept(_context: unknown, next: CallHandler): Observable<unknown> {
    return merge(
      next.handle(),
      firstMessage.pipe(
        take(1),
        mergeMap(() => throwError(() => thrown())),
      ),
    );
  }
}

/** Turns the handler's error into a value, as a careless logging interceptor would. */
@Injectable()
class SwallowingInterceptor implements NestInterceptor {
  intercept(_context: unknown, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(catchError(() => of(null)));
  }
}

@Catch()
class ThrowingFilter implements ExceptionFilter {
  catch(): void {
    throw thrown();
  }
}

@Controller('u')
class UserCodeController {
  @Ws('echo')
  async echo(@Socket() socket: WebSocketContext) {
    for await (const message of socket) await socket.send(message);
  }

  @Ws('guard')
  @UseGuards(ThrowingGuard)
  guard() {
    return undefined;
  }

  @Ws('pipe/:id')
  pipe(@Param('id', ThrowingPipe) _id: string) {
    return undefined;
  }

  @Ws('interceptor-before')
  @UseInterceptors(ThrowingInterceptor)
  interceptorBefore() {
    return undefined;
  }

  @Ws('interceptor-after')
  @UseInterceptors(FailingSessionInterceptor)
  async interceptorAfter(@Socket() socket: WebSocketContext) {
    for await (const _message of socket) firstMessage.next();
  }

  @Ws('handler-throws')
  handlerThrows() {
    throw thrown();
  }

  @Ws('handler-rejects')
  async handlerRejects(@Socket() socket: WebSocketContext) {
    await socket.receive();
    throw thrown();
  }

  @Ws('filter-after')
  @UseFilters(ThrowingFilter)
  async filterAfter(@Socket() socket: WebSocketContext) {
    await socket.receive();
    throw new Error('the handler failed');
  }

  @Ws('filter-before')
  @UseFilters(ThrowingFilter)
  @UseGuards(UnauthorizedGuard)
  filterBefore() {
    return undefined;
  }

  @Ws('origin', {
    allowedOrigins: () => {
      throw thrown();
    },
  })
  origin() {
    return undefined;
  }

  @Ws('swallowed')
  @UseInterceptors(SwallowingInterceptor)
  async swallowed(@Socket() socket: WebSocketContext) {
    await socket.receive();
    throw new Error('an error the interceptor swallows');
  }

  @Ws('send')
  async send(@Socket() socket: WebSocketContext) {
    let outcome: unknown;
    try {
      const result: unknown = socket.send(unsendable());
      outcome =
        result instanceof Promise
          ? await result.then(
              () => 'resolved',
              (error: unknown) => error,
            )
          : `returned ${typeof result}`;
    } catch (error) {
      outcome = { threwSynchronously: error };
    }
    sendOutcome.resolve(outcome);
    await socket.send('still open');
    await socket.receive();
  }
}

/** A wait for anything that a broken server would leave pending: fails after 2 s. */
const WAIT = 2000;
const quick: ConnectOptions = { timeout: WAIT };

describe.each(platforms)(
  'user code that throws anything, on %s',
  (platform) => {
    let app: INestApplication;
    let logs: CapturedLogs;
    const clients: WsTestClient[] = [];

    beforeAll(async () => {
      ({ app, logs } = await startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [UserCodeController],
        },
        undefined,
        platform,
      ));
    });

    afterEach(() => {
      for (const client of clients.splice(0)) client.ws.terminate();
    });

    afterAll(() => app.close());

    async function open(path: string, options: ConnectOptions = {}) {
      const client = await connectWs(app, path, { ...quick, ...options });
      clients.push(client);
      return client;
    }

    function closed(client: WsTestClient) {
      return within(
        client.closed,
        WAIT,
        `the server never closed ${client.ws.url}`,
      );
    }

    /** The app answers an upgrade and a message after what the test did. */
    async function expectServing() {
      const client = await open('/u/echo');
      client.send('still serving');
      expect((await client.next()).text).toBe('still serving');
      await client.close();
    }

    /** Counts the lines logged at each level while `run` runs, and until the app served again. */
    async function logged(run: () => Promise<void>) {
      const [errors, warnings] = [logs.count('error'), logs.count('warn')];
      await run();
      await expectServing();
      return {
        error: logs.count('error') - errors,
        warn: logs.count('warn') - warnings,
      };
    }

    const INTERNAL_ERROR_BODY = {
      statusCode: 500,
      message: 'Internal server error',
    };

    describe.each(THROWN)('when user code throws %s', (_name, value, close) => {
      beforeEach(() => {
        thrown = value;
      });

      it('answers a throwing guard with HTTP 500, logged once', async () => {
        const counted = await logged(async () => {
          const { body } = await expectRejected(app, '/u/guard', 500, quick);
          expect(body).toEqual(INTERNAL_ERROR_BODY);
        });
        expect(counted.error).toBe(1);
      });

      it('answers a throwing param pipe with HTTP 500, logged once', async () => {
        const counted = await logged(async () => {
          const { body } = await expectRejected(app, '/u/pipe/7', 500, quick);
          expect(body).toEqual(INTERNAL_ERROR_BODY);
        });
        expect(counted.error).toBe(1);
      });

      it('answers an interceptor that throws before next.handle() with HTTP 500', async () => {
        await expectRejected(app, '/u/interceptor-before', 500, quick);
        await expectServing();
      });

      it(`closes with ${close.code} when an interceptor's Observable errors after the session started`, async () => {
        const client = await open('/u/interceptor-after');
        client.send('go');
        expect(await closed(client)).toEqual(close);
        await expectServing();
      });

      it(`closes with ${close.code} when the handler throws, logged once`, async () => {
        const counted = await logged(async () => {
          const client = await open('/u/handler-throws');
          expect(await closed(client)).toEqual(close);
        });
        expect(counted).toEqual(
          close.code === 1008 ? { warn: 1, error: 0 } : { warn: 0, error: 1 },
        );
      });

      it(`closes with ${close.code} when the handler rejects after a message, logged once`, async () => {
        const counted = await logged(async () => {
          const client = await open('/u/handler-rejects');
          client.send('go');
          expect(await closed(client)).toEqual(close);
        });
        expect(counted).toEqual(
          close.code === 1008 ? { warn: 1, error: 0 } : { warn: 0, error: 1 },
        );
      });

      it("closes with 1011 when the endpoint's exception filter throws while handling a handler error", async () => {
        const client = await open('/u/filter-after');
        client.send('go');
        expect(await closed(client)).toEqual(INTERNAL);
        await expectServing();
      });

      it("answers HTTP 500 when the endpoint's exception filter throws while handling a guard's HttpException", async () => {
        await expectRejected(app, '/u/filter-before', 500, quick);
        await expectServing();
      });

      it('answers HTTP 500 when the allowedOrigins function throws', async () => {
        await expectRejected(app, '/u/origin', 500, {
          ...quick,
          origin: 'http://elsewhere.example',
        });
        await expectServing();
      });
    });

    it("closes the connection when an interceptor swallows the handler's error, and the session settles", async () => {
      const client = await open('/u/swallowed');
      client.send('go');
      await closed(client);
      const sessions = app.get(WebSocketSessions);
      await within(sessions.settled(), WAIT, 'the sessions never settled');
      expect(sessions.size).toBe(0);
      await expectServing();
    });

    describe.each(UNSENDABLE)('send(%s)', (_name, value, rejection) => {
      beforeEach(() => {
        unsendable = value;
        sendOutcome = new Deferred<unknown>();
      });

      it(`returns a promise that rejects with a ${rejection.name}, and the connection stays open`, async () => {
        const client = await open('/u/send');
        expect(
          await within(sendOutcome.promise, WAIT, 'send() never settled'),
        ).toBeInstanceOf(rejection);
        expect((await client.next()).text).toBe('still open');
        await client.close();
      });
    });
  },
);
