import {
  CanActivate,
  Controller,
  ExecutionContext,
  INestApplication,
  Injectable,
  MiddlewareConsumer,
  Module,
  NestMiddleware,
  Req,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { JwtModule, JwtService } from '@nestjs/jwt';
import { AuthGuard, PassportModule, PassportStrategy } from '@nestjs/passport';
import { ThrottlerGuard, ThrottlerModule } from '@nestjs/throttler';
import cookieParser from 'cookie-parser';
import { sign } from 'cookie-signature';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage } from 'node:http';
import { ExtractJwt, Strategy } from 'passport-jwt';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, expectRejected } from 'nestjs-ws-endpoints/testing';
import { platforms, startApp } from './utils/test-app';

const SECRET = 'test-secret';

/**
 * Browsers cannot set headers on a WebSocket, but they can offer subprotocols: the client offers
 * ['access_token', '<jwt>'], the endpoint speaks 'access_token' and echoes it.
 */
function fromProtocolHeader(request: IncomingMessage): string | null {
  const offered = String(request.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim());
  const index = offered.indexOf('access_token');
  return index >= 0 ? (offered[index + 1] ?? null) : null;
}

@Injectable()
class JwtStrategy extends PassportStrategy(Strategy) {
  constructor() {
    super({
      secretOrKey: SECRET,
      jwtFromRequest: ExtractJwt.fromExtractors([
        ExtractJwt.fromAuthHeaderAsBearerToken(),
        ExtractJwt.fromUrlQueryParameter('access_token'),
        fromProtocolHeader,
      ]),
    });
  }

  validate(payload: { sub: string }) {
    return { id: payload.sub };
  }
}

@Controller('auth')
class AuthController {
  @Ws('jwt', { protocols: ['access_token'] })
  @UseGuards(AuthGuard('jwt'))
  async jwt(@Socket() socket: WebSocketContext) {
    await socket.send({ user: socket.user, protocol: socket.protocol });
  }

  @Ws('tagged')
  async tagged(@Socket() socket: WebSocketContext) {
    // middleware sees the raw request: on Fastify, @Req() is Fastify's wrapper around it
    const request = socket.request as IncomingMessage & { tag?: string };
    await socket.send({ tag: request.tag ?? null });
  }

  @Ws('traced')
  async traced(@Socket() socket: WebSocketContext) {
    for await (const message of socket) {
      await socket.send({
        message: message.text,
        traceId: requestContext.getStore()?.traceId ?? null,
      });
    }
  }
}

/** A request-scoped store, as nestjs-cls and tracing middleware keep one. */
const requestContext = new AsyncLocalStorage<{ traceId: string }>();

/** Marks every request and opens its store, as an app's own middleware would (logging, tracing…). */
class TagMiddleware implements NestMiddleware {
  use(request: { tag?: string }, _response: unknown, next: () => void) {
    request.tag = 'seen by middleware';
    requestContext.run({ traceId: 'trace-1' }, next);
  }
}

@Module({
  imports: [
    WsEndpointsModule.forRoot({}),
    PassportModule,
    JwtModule.register({ secret: SECRET }),
  ],
  controllers: [AuthController],
  providers: [JwtStrategy],
})
class AuthAppModule {
  configure(consumer: MiddlewareConsumer) {
    consumer.apply(TagMiddleware).forRoutes('*path');
  }
}

describe.each(platforms)('the guards users already have, on %s', (platform) => {
  let app: INestApplication;
  let token: string;

  beforeAll(async () => {
    ({ app } = await startApp(
      { imports: [AuthAppModule] },
      undefined,
      platform,
    ));
    token = app.get(JwtService).sign({ sub: 'ada' });
  });

  afterAll(() => app.close());

  it("accepts @nestjs/passport's AuthGuard('jwt') with the token in Authorization: Bearer", async () => {
    const client = await connectWs(app, '/auth/jwt', {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(await client.nextJson()).toEqual({
      user: { id: 'ada' },
      protocol: '',
    });
  });

  it('accepts the token in a query parameter through a custom extractor', async () => {
    const client = await connectWs(app, `/auth/jwt?access_token=${token}`);
    expect((await client.nextJson()).user).toEqual({ id: 'ada' });
  });

  it('accepts the token in Sec-WebSocket-Protocol, the one header a browser can set, and echoes the chosen protocol', async () => {
    const client = await connectWs(app, '/auth/jwt', {
      protocols: ['access_token', token],
    });
    expect(client.ws.protocol).toBe('access_token');
    expect(await client.nextJson()).toEqual({
      user: { id: 'ada' },
      protocol: 'access_token',
    });
  });

  it('answers 401 without a token, or with a forged one', async () => {
    await expectRejected(app, '/auth/jwt', 401);
    const forged = new JwtService({ secret: 'other' }).sign({ sub: 'ada' });
    await expectRejected(app, '/auth/jwt', 401, {
      headers: { authorization: `Bearer ${forged}` },
    });
  });

  it('runs the app middleware (MiddlewareConsumer) on the upgrade request', async () => {
    const client = await connectWs(app, '/auth/tagged');
    expect(await client.nextJson()).toEqual({ tag: 'seen by middleware' });
  });

  it("keeps the request's AsyncLocalStorage store (nestjs-cls, tracing) for the whole session", async () => {
    const client = await connectWs(app, '/auth/traced');
    for (const message of ['one', 'two']) {
      client.send(message);
      expect(await client.nextJson()).toEqual({ message, traceId: 'trace-1' });
    }
  });
});

@Controller('limited')
class LimitedController {
  @Ws()
  async limited(@Socket() socket: WebSocketContext) {
    await socket.send('in');
  }
}

describe.each(platforms)(
  "@nestjs/throttler's ThrottlerGuard on the upgrade, on %s",
  (platform) => {
    it('answers 429 once an IP has used up its upgrade attempts', async () => {
      const { app } = await startApp(
        {
          imports: [
            WsEndpointsModule.forRoot({}),
            ThrottlerModule.forRoot([{ ttl: 60_000, limit: 3 }]),
          ],
          controllers: [LimitedController],
          providers: [{ provide: APP_GUARD, useClass: ThrottlerGuard }],
        },
        undefined,
        platform,
      );
      for (let i = 0; i < 3; i++)
        await (
          await connectWs(app, '/limited')
        ).closed;
      const { body } = await expectRejected(app, '/limited', 429);
      expect(body).toMatchObject({ statusCode: 429 });
      await app.close();
    });
  },
);

/** A guard over a signed session cookie that cookie-parser middleware has parsed. */
class SessionCookieGuard implements CanActivate {
  canActivate(context: ExecutionContext) {
    const request = context
      .switchToHttp()
      .getRequest<{ signedCookies: Record<string, string> }>();
    if (request.signedCookies.session !== 'valid')
      throw new UnauthorizedException('No session');
    return true;
  }
}

@Controller('cookies')
class CookieController {
  @Ws()
  @UseGuards(SessionCookieGuard)
  async cookies(
    @Socket() socket: WebSocketContext,
    @Req() request: { cookies: Record<string, string> },
  ) {
    await socket.send({ cookies: request.cookies });
  }
}

describe('Express middleware on the upgrade: cookie-parser', () => {
  let app: INestApplication;
  const signed = `s:${sign('valid', 'cookie-secret')}`;

  beforeAll(async () => {
    ({ app } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({})],
        controllers: [CookieController],
      },
      (app) => app.use(cookieParser('cookie-secret')),
    ));
  });

  afterAll(() => app.close());

  it('makes @Req().cookies work and a session-cookie guard pass', async () => {
    const client = await connectWs(app, '/cookies', {
      headers: { cookie: `theme=dark; session=${encodeURIComponent(signed)}` },
    });
    expect((await client.nextJson()).cookies).toEqual({ theme: 'dark' });
  });

  it('answers 401 when the session cookie is missing or not signed by the app', async () => {
    await expectRejected(app, '/cookies', 401);
    await expectRejected(app, '/cookies', 401, {
      headers: { cookie: 'session=valid' },
    });
  });
});
