import {
  ArgumentsHost,
  CallHandler,
  Catch,
  Controller,
  ExceptionFilter,
  ExecutionContext,
  Get,
  INestApplication,
  Injectable,
  NestInterceptor,
} from '@nestjs/common';
import { APP_FILTER, APP_INTERCEPTOR, BaseExceptionFilter } from '@nestjs/core';
import { finalize, Observable } from 'rxjs';
import type { AddressInfo } from 'node:net';
import {
  isWebSocketUpgrade,
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs } from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { platforms, startApp } from './utils/test-app';

class PaymentRequiredError extends Error {}
class QuotaError extends Error {}

const sessions: string[] = [];
let sessionEnded = new Deferred();

/** Counts sessions as an APP_INTERCEPTOR; useGlobalInterceptors registers a second one. */
@Injectable()
class SessionCounter implements NestInterceptor {
  label = 'app';

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    sessions.push(
      `${this.label} start ${context.getType()} upgrade=${isWebSocketUpgrade(context)}`,
    );
    return next.handle().pipe(
      finalize(() => {
        sessions.push(`${this.label} end`);
        sessionEnded.resolve();
      }),
    );
  }
}

/**
 * A filter for one exception type that chooses the close code after the upgrade. After the
 * upgrade, host.getType() is 'ws' and host.switchToWs().getClient() is the WebSocketContext.
 */
@Catch(PaymentRequiredError)
class PaymentFilter implements ExceptionFilter {
  async catch(exception: PaymentRequiredError, host: ArgumentsHost) {
    if (host.getType() !== 'ws') return;
    const socket = host.switchToWs().getClient<WebSocketContext>();
    await socket.send({ error: 'payment required', detail: exception.message });
    await socket.close(4402, 'Payment required');
  }
}

/** A catch-all filter of an HTTP app that tells HTTP from WebSocket by the host type. */
@Catch()
class EverythingFilter extends BaseExceptionFilter {
  catch(exception: unknown, host: ArgumentsHost) {
    if (host.getType() === 'ws') {
      void host
        .switchToWs()
        .getClient<WebSocketContext>()
        .close(4500, 'Caught by the app filter');
      return;
    }
    super.catch(exception, host);
  }
}

@Controller('enhanced')
class EnhancedController {
  @Ws('echo')
  async echo(@Socket() socket: WebSocketContext) {
    for await (const message of socket) await socket.send(message.text);
  }

  @Get('plain')
  plain() {
    return 'plain';
  }

  @Ws('pay')
  async pay() {
    throw new PaymentRequiredError('plan expired');
  }

  @Ws('quota')
  async quota() {
    throw new QuotaError('over quota');
  }
}

describe.each(platforms)('global enhancers on %s', (platform) => {
  let app: INestApplication;

  beforeEach(async () => {
    sessions.length = 0;
    sessionEnded = new Deferred();
    ({ app } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({})],
        controllers: [EnhancedController],
        providers: [
          { provide: APP_INTERCEPTOR, useClass: SessionCounter },
          { provide: APP_FILTER, useClass: EverythingFilter },
        ],
      },
      (app) => {
        app.useGlobalInterceptors(
          Object.assign(new SessionCounter(), { label: 'global' }),
        );
        // registered later, so it is tried before the catch-all, as for HTTP
        app.useGlobalFilters(new PaymentFilter());
      },
      platform,
    ));
  });

  afterEach(() => app?.close());

  it('wraps each session in APP_INTERCEPTOR and useGlobalInterceptors interceptors', async () => {
    const client = await connectWs(app, '/enhanced/echo');
    client.send('hi');
    await client.next();
    expect(sessions.sort()).toEqual([
      'app start http upgrade=true',
      'global start http upgrade=true',
    ]);
    await client.close();
    await sessionEnded.promise;
    expect(sessions).toContain('app end');
  });

  it('tells HTTP requests from upgrades with isWebSocketUpgrade()', async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    await fetch(`http://127.0.0.1:${port}/enhanced/plain`);
    expect(sessions).toContain('app start http upgrade=false');
  });

  it('lets a useGlobalFilters filter for an exception type choose the close code after the upgrade', async () => {
    const client = await connectWs(app, '/enhanced/pay');
    expect(await client.nextJson()).toEqual({
      error: 'payment required',
      detail: 'plan expired',
    });
    expect(await client.closed).toEqual({
      code: 4402,
      reason: 'Payment required',
    });
  });

  it('runs an APP_FILTER catch-all with a ws host after the upgrade', async () => {
    const client = await connectWs(app, '/enhanced/quota');
    expect(await client.closed).toEqual({
      code: 4500,
      reason: 'Caught by the app filter',
    });
  });
});
