import {
  ArgumentsHost,
  CallHandler,
  Catch,
  ExceptionFilter,
  Controller,
  ExecutionContext,
  ForbiddenException,
  INestApplication,
  Injectable,
  NestInterceptor,
  UseFilters,
  UseInterceptors,
} from '@nestjs/common';
import { WsException } from '@nestjs/websockets';
import { finalize, interval, map, Observable, take } from 'rxjs';
import {
  Socket,
  WebSocketContext,
  WebSocketDisconnect,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs } from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { CapturedLogs, startApp } from './utils/test-app';

const events: string[] = [];
const seen = {
  sessionEnded: new Deferred(),
  generatorReturned: new Deferred(),
  midSend: new Deferred<unknown>(),
  awaitingClosed: new Deferred<unknown>(),
};

@Injectable()
class SessionLoggingInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    events.push(`start ${context.getHandler().name}`);
    return next.handle().pipe(
      finalize(() => {
        events.push('end');
        seen.sessionEnded.resolve();
      }),
    );
  }
}

@Controller('shapes')
class ShapesController {
  @Ws('observable')
  ticks() {
    return interval(1).pipe(
      take(3),
      map((n) => ({ n })),
    );
  }

  @Ws('generator')
  async *generator() {
    yield 'a';
    yield Buffer.from('b');
    yield { c: true };
  }

  @Ws('endless')
  async *endless() {
    // large chunks fill the socket buffer soon, so the writes go asynchronous and the client gets its turn
    const chunk = Buffer.alloc(64 * 1024);
    try {
      for (;;) yield chunk;
    } finally {
      seen.generatorReturned.resolve();
    }
  }

  @Ws('loop')
  async loop(@Socket() socket: WebSocketContext) {
    await socket.send('bye');
  }

  @Ws('lookup')
  async lookup(@Socket() socket: WebSocketContext) {
    await socket.send(socket.id);
    for await (const message of socket) await socket.send(message);
  }

  @Ws('intercepted')
  @UseInterceptors(SessionLoggingInterceptor)
  async intercepted(@Socket() socket: WebSocketContext) {
    for await (const message of socket) {
      events.push(`message ${message.text}`);
      await socket.send('ok');
    }
  }
}

/** An endpoint's own filter, choosing the close code after the upgrade (no interceptor here). */
@Catch(ForbiddenException)
class ClosingFilter implements ExceptionFilter {
  async catch(_error: ForbiddenException, host: ArgumentsHost) {
    await host
      .switchToWs()
      .getClient<WebSocketContext>()
      .close(4499, 'Chosen by the filter');
  }
}

@Controller('errors')
class ErrorsController {
  @Ws('ws-exception')
  async wsException() {
    throw new WsException('Not allowed here');
  }

  @Ws('ws-exception-long')
  async wsExceptionLong() {
    throw new WsException(`Not allowed: ${'é'.repeat(100)}`);
  }

  @Ws('ws-exception-object')
  async wsExceptionObject() {
    throw new WsException({ code: 7 });
  }

  @Ws('http-exception')
  async httpException() {
    throw new ForbiddenException('Members only');
  }

  @Ws('crash')
  async crash(@Socket() socket: WebSocketContext) {
    await socket.receive();
    throw new Error('database password is hunter2');
  }

  @Ws('foreign-disconnect')
  async foreignDisconnect(@Socket() socket: WebSocketContext) {
    await socket.receive();
    // e.g. a send to another client that has gone: an error of this handler, not its end
    throw new WebSocketDisconnect(1001, 'Other client left');
  }

  @Ws('filtered')
  @UseFilters(ClosingFilter)
  async filtered() {
    throw new ForbiddenException('Filtered');
  }

  @Ws('observable-error')
  failing() {
    return new Observable((subscriber) =>
      subscriber.error(new Error('stream broke')),
    );
  }

  @Ws('mid-send')
  async midSend(@Socket() socket: WebSocketContext) {
    const chunk = Buffer.alloc(64 * 1024);
    try {
      for (;;) await socket.send(chunk);
    } catch (error) {
      seen.midSend.resolve(error);
      throw error;
    }
  }

  @Ws('awaiting')
  async awaiting(@Socket() socket: WebSocketContext) {
    // waits on something else (a queue, a timer…) that honours the connection's signal
    await new Promise((resolve) =>
      socket.signal.addEventListener('abort', resolve, { once: true }),
    );
    seen.awaitingClosed.resolve(socket.signal.reason);
  }
}

@Controller('limits')
class LimitsController {
  @Ws('default')
  async echo(@Socket() socket: WebSocketContext) {
    for await (const message of socket)
      await socket.send(`${message.data.length}`);
  }

  @Ws('small', { maxPayload: 16 })
  async small(@Socket() socket: WebSocketContext) {
    for await (const message of socket)
      await socket.send(`${message.data.length}`);
  }
}

describe('sessions', () => {
  let app: INestApplication;
  let logs: CapturedLogs;

  beforeAll(async () => {
    ({ app, logs } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [ShapesController, ErrorsController, LimitsController],
    }));
  });

  afterAll(() => app.close());

  describe('handler shapes', () => {
    it('sends each value of an Observable and closes with 1000 when it completes', async () => {
      const client = await connectWs(app, '/shapes/observable');
      expect([
        await client.nextJson(),
        await client.nextJson(),
        await client.nextJson(),
      ]).toEqual([{ n: 0 }, { n: 1 }, { n: 2 }]);
      expect(await client.closed).toEqual({ code: 1000, reason: '' });
    });

    it('sends each value of an async generator and closes with 1000 when it returns', async () => {
      const client = await connectWs(app, '/shapes/generator');
      const frames = [
        await client.next(),
        await client.next(),
        await client.next(),
      ];
      expect(frames.map((f) => [f.isBinary, f.text])).toEqual([
        [false, 'a'],
        [true, 'b'],
        [false, '{"c":true}'],
      ]);
      expect(await client.closed).toEqual({ code: 1000, reason: '' });
    });

    it('calls return() on a generator when the peer closes', async () => {
      const client = await connectWs(app, '/shapes/endless');
      await client.next();
      await client.close();
      await seen.generatorReturned.promise;
    });

    it('closes with 1000 when an async handler settles with the socket open', async () => {
      const client = await connectWs(app, '/shapes/loop');
      expect((await client.next()).text).toBe('bye');
      expect(await client.closed).toEqual({ code: 1000, reason: '' });
    });

    it('lets an interceptor wrap the whole session, from the upgrade to the close', async () => {
      const client = await connectWs(app, '/shapes/intercepted');
      client.send('hi');
      await client.next();
      expect(events).toEqual(['start intercepted', 'message hi']);
      await client.close();
      await seen.sessionEnded.promise;
      expect(events).toEqual(['start intercepted', 'message hi', 'end']);
    });
  });

  describe('errors after the upgrade', () => {
    it('closes with 1008 and the message of a WsException, logged once as a warning', async () => {
      const client = await connectWs(app, '/errors/ws-exception');
      expect(await client.closed).toEqual({
        code: 1008,
        reason: 'Not allowed here',
      });
      expect(logs.find('warn', 'Not allowed here')).toHaveLength(1);
    });

    it('cuts a close reason over 123 bytes to fit, without splitting a character', async () => {
      const client = await connectWs(app, '/errors/ws-exception-long');
      const { code, reason } = await client.closed;
      expect(code).toBe(1008);
      expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
      expect(reason).toMatch(/^Not allowed: é+\.\.\.$/);
    });

    it('closes with 1008 and the JSON of a WsException given an object without message', async () => {
      const client = await connectWs(app, '/errors/ws-exception-object');
      expect(await client.closed).toEqual({ code: 1008, reason: '{"code":7}' });
    });

    it("lets the endpoint's exception filter choose the close code", async () => {
      const client = await connectWs(app, '/errors/filtered');
      expect(await client.closed).toEqual({
        code: 4499,
        reason: 'Chosen by the filter',
      });
    });

    it('closes with 4000 + status for an HttpException', async () => {
      const client = await connectWs(app, '/errors/http-exception');
      expect(await client.closed).toEqual({
        code: 4403,
        reason: 'Members only',
      });
    });

    it('closes with 1011 "Internal server error" for anything else, never sending its message, logged once', async () => {
      const client = await connectWs(app, '/errors/crash');
      client.send('go');
      expect(await client.closed).toEqual({
        code: 1011,
        reason: 'Internal server error',
      });
      const errors = logs.find('error', 'hunter2');
      expect(errors).toHaveLength(1);
      expect(errors[0].message).toContain('ErrorsController.crash');
    });

    it("closes with 1011 when another socket's disconnect escapes the handler", async () => {
      const client = await connectWs(app, '/errors/foreign-disconnect');
      client.send('go');
      expect(await client.closed).toEqual({
        code: 1011,
        reason: 'Internal server error',
      });
      expect(
        logs.find('error', 'ErrorsController.foreignDisconnect'),
      ).toHaveLength(1);
    });

    it('closes with 1011 when an Observable handler errors', async () => {
      const client = await connectWs(app, '/errors/observable-error');
      expect(await client.closed).toEqual({
        code: 1011,
        reason: 'Internal server error',
      });
    });

    it('keeps serving after handlers failed', async () => {
      const client = await connectWs(app, '/shapes/loop');
      expect((await client.next()).text).toBe('bye');
    });
  });

  describe('peers that go away', () => {
    it('ends the session quietly when the client disconnects mid-send', async () => {
      const errorsBefore = logs.lines.filter(
        (line) => line.level === 'error',
      ).length;
      const client = await connectWs(app, '/errors/mid-send');
      await client.next();
      client.ws.terminate();
      expect(await seen.midSend.promise).toBeInstanceOf(WebSocketDisconnect);
      await app.get(WebSocketSessions).settled();
      expect(logs.lines.filter((line) => line.level === 'error').length).toBe(
        errorsBefore,
      );
    });

    it('aborts the signal of a handler awaiting something else when the client closes', async () => {
      const client = await connectWs(app, '/errors/awaiting');
      await client.close(4002, 'Gone');
      expect(await seen.awaitingClosed.promise).toMatchObject({
        code: 4002,
        reason: 'Gone',
      });
    });

    it('finds a session by its id while it lasts, and no longer once it has ended', async () => {
      const sessions = app.get(WebSocketSessions);
      const client = await connectWs(app, '/shapes/lookup');
      const id = (await client.next()).text;
      const found = sessions.get(id);
      expect(found?.id).toBe(id);
      await found!.send('found by id');
      expect((await client.next()).text).toBe('found by id');
      await client.close();
      await sessions.settled();
      expect(sessions.get(id)).toBeUndefined();
    });

    it('counts 0 live sessions after 200 rapid connect/close cycles', async () => {
      const sessions = app.get(WebSocketSessions);
      for (let i = 0; i < 200; i++) {
        const client = await connectWs(app, '/limits/default');
        if (i % 2) client.ws.terminate();
        else await client.close();
      }
      await sessions.settled();
      expect(sessions.size).toBe(0);
    });
  });

  describe('maxPayload', () => {
    it('accepts a message of exactly 64 KiB by default and closes with 1009 above it', async () => {
      const client = await connectWs(app, '/limits/default');
      client.send(Buffer.alloc(64 * 1024));
      expect((await client.next()).text).toBe(String(64 * 1024));
      client.send(Buffer.alloc(64 * 1024 + 1));
      expect((await client.closed).code).toBe(1009);
    });

    it('takes a per-endpoint maxPayload over the default', async () => {
      const client = await connectWs(app, '/limits/small');
      client.send('x'.repeat(16));
      expect((await client.next()).text).toBe('16');
      client.send('x'.repeat(17));
      expect((await client.closed).code).toBe(1009);
    });
  });
});

describe('module options', () => {
  it("applies forRoot() options as every endpoint's defaults", async () => {
    const { app } = await startApp({
      imports: [WsEndpointsModule.forRoot({ maxPayload: 8 })],
      controllers: [LimitsController],
    });
    const client = await connectWs(app, '/limits/default');
    client.send('123456789');
    expect((await client.closed).code).toBe(1009);
    await app.close();
  });

  it('takes its options from forRootAsync()', async () => {
    const { app } = await startApp({
      imports: [
        WsEndpointsModule.forRootAsync({
          useFactory: async () => ({ maxPayload: 4 }),
        }),
      ],
      controllers: [LimitsController],
    });
    const client = await connectWs(app, '/limits/default');
    client.send('12345');
    expect((await client.closed).code).toBe(1009);
    await app.close();
  });
});
