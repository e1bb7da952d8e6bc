import {
  ArgumentsHost,
  CanActivate,
  Catch,
  Controller,
  ExceptionFilter,
  ExecutionContext,
  HttpException,
  INestApplication,
  Injectable,
  SetMetadata,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { APP_GUARD, HttpAdapterHost, Reflector } from '@nestjs/core';
import type { Request } from 'express';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, expectRejected } from 'nestjs-ws-endpoints/testing';
import { platforms, startApp } from './utils/test-app';

@Injectable()
class TokenService {
  userFor(token: string | undefined): { id: string } | undefined {
    return token === 'secret' ? { id: 'ada' } : undefined;
  }
}

/** An ordinary HTTP bearer-token guard that injects a service, used unchanged. */
@Injectable()
class TokenGuard implements CanActivate {
  constructor(private readonly tokens: TokenService) {}

  canActivate(context: ExecutionContext): boolean {
    const request = context
      .switchToHttp()
      .getRequest<Request & { user?: unknown }>();
    const header = request.headers.authorization;
    if (!header) throw new UnauthorizedException('Missing token');
    const user = this.tokens.userFor(header.replace(/^Bearer /, ''));
    if (!user) throw new UnauthorizedException('Invalid token');
    request.user = user;
    return true;
  }
}

class DenyGuard implements CanActivate {
  canActivate() {
    return false;
  }
}

class TeapotGuard implements CanActivate {
  canActivate(): boolean {
    throw new HttpException(
      { statusCode: 418, message: 'No coffee here', hint: 'brew tea' },
      418,
    );
  }
}

/** Records what a guard sees of the upgrade request as `request.user`. */
class InspectGuard implements CanActivate {
  canActivate(context: ExecutionContext) {
    const request = context
      .switchToHttp()
      .getRequest<Request & { user?: unknown }>();
    request.user = {
      type: context.getType(),
      params: request.params,
      query: request.query,
      header: request.headers['x-client'],
      ip: request.ip,
      handler: context.getHandler().name,
      controller: context.getClass().name,
    };
    return true;
  }
}

class BrokenGuard implements CanActivate {
  canActivate(): boolean {
    throw new Error('token store unreachable');
  }
}

const Tag = (tag: string) => SetMetadata('tag', tag);

/** A global guard (APP_GUARD) that reads the handler's metadata through the Reflector. */
@Injectable()
class TagGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext) {
    return (
      this.reflector.get<string>('tag', context.getHandler()) !== 'blocked'
    );
  }
}

class HeaderGuard implements CanActivate {
  canActivate(context: ExecutionContext) {
    return (
      context.switchToHttp().getRequest<Request>().headers['x-global'] !==
      'deny'
    );
  }
}

@Catch(UnauthorizedException)
class UnauthorizedFilter implements ExceptionFilter {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(exception: UnauthorizedException, host: ArgumentsHost) {
    const response = host.switchToHttp().getResponse<unknown>();
    this.adapterHost.httpAdapter.reply(
      response,
      { filtered: true, message: exception.message },
      401,
    );
  }
}

async function sendUser(socket: WebSocketContext) {
  await socket.send({ user: socket.user ?? null });
}

@Controller('secure')
@UseGuards(TokenGuard)
class SecureController {
  @Ws()
  async secure(@Socket() socket: WebSocketContext) {
    await sendUser(socket);
  }

  @Ws('denied')
  @UseGuards(DenyGuard)
  async denied() {}
}

@Controller('open')
class OpenController {
  @Ws('inspect/:id')
  @UseGuards(InspectGuard)
  async inspect(@Socket() socket: WebSocketContext) {
    await sendUser(socket);
  }

  @Ws('teapot')
  @UseGuards(TeapotGuard)
  async teapot() {}

  @Ws('broken')
  @UseGuards(BrokenGuard)
  async broken() {}

  @Ws('blocked')
  @Tag('blocked')
  async blocked() {}

  @Ws('plain')
  async plain(@Socket() socket: WebSocketContext) {
    await sendUser(socket);
  }
}

const bearer = (token: string) => ({
  headers: { authorization: `Bearer ${token}` },
});

describe.each(platforms)('guards on the upgrade request, on %s', (platform) => {
  let app: INestApplication;

  beforeAll(async () => {
    ({ app } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({})],
        controllers: [SecureController, OpenController],
        providers: [TokenService, { provide: APP_GUARD, useClass: TagGuard }],
      },
      (app) => app.useGlobalGuards(new HeaderGuard()),
      platform,
    ));
  });

  afterAll(() => app.close());

  it('accepts a valid token from a controller guard referenced by class that injects a service', async () => {
    const client = await connectWs(app, '/secure', bearer('secret'));
    expect(await client.nextJson()).toEqual({ user: { id: 'ada' } });
  });

  it("answers 401 with Nest's JSON body when the token is missing", async () => {
    const { body } = await expectRejected(app, '/secure', 401);
    expect(body).toEqual({
      statusCode: 401,
      message: 'Missing token',
      error: 'Unauthorized',
    });
  });

  it('answers 401 when the token is wrong', async () => {
    const { body } = await expectRejected(app, '/secure', 401, bearer('guess'));
    expect(body).toMatchObject({ statusCode: 401, message: 'Invalid token' });
  });

  it('answers 403 when a method guard returns false', async () => {
    const { body } = await expectRejected(
      app,
      '/secure/denied',
      403,
      bearer('secret'),
    );
    expect(body).toEqual({
      statusCode: 403,
      message: 'Forbidden resource',
      error: 'Forbidden',
    });
  });

  it('answers an HttpException thrown by a guard with its own status and body', async () => {
    const { body } = await expectRejected(app, '/open/teapot', 418);
    expect(body).toEqual({
      statusCode: 418,
      message: 'No coffee here',
      hint: 'brew tea',
    });
  });

  it('runs guards with getType() "http" on the upgrade request, params, query, headers and ip filled in', async () => {
    const client = await connectWs(app, '/open/inspect/7?room=general', {
      headers: { 'x-client': 'jest' },
    });
    expect(await client.nextJson()).toEqual({
      user: {
        type: 'http',
        params: { id: '7' },
        query: { room: 'general' },
        header: 'jest',
        ip: '127.0.0.1',
        handler: 'inspect',
        controller: 'OpenController',
      },
    });
  });

  it('answers 500 without details when a guard throws an unexpected error', async () => {
    const { body } = await expectRejected(app, '/open/broken', 500);
    expect(body).toEqual({ statusCode: 500, message: 'Internal server error' });
  });

  it('runs an APP_GUARD that reads the handler metadata through the Reflector', async () => {
    await expectRejected(app, '/open/blocked', 403);
    await connectWs(app, '/open/plain');
  });

  it('runs a guard registered with useGlobalGuards', async () => {
    await expectRejected(app, '/open/plain', 403, {
      headers: { 'x-global': 'deny' },
    });
  });

  it('leaves socket.user undefined when no guard sets request.user', async () => {
    const client = await connectWs(app, '/open/plain');
    expect(await client.nextJson()).toEqual({ user: null });
  });
});

describe.each(platforms)(
  "the app's HTTP exception filters, on %s",
  (platform) => {
    let app: INestApplication;

    afterEach(() => app.close());

    it('shape the answer to a refused upgrade', async () => {
      ({ app } = await startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [SecureController],
          providers: [TokenService],
        },
        (app) =>
          app.useGlobalFilters(
            new UnauthorizedFilter(app.get(HttpAdapterHost)),
          ),
        platform,
      ));
      const { body } = await expectRejected(app, '/secure', 401);
      expect(body).toEqual({ filtered: true, message: 'Missing token' });
    });
  },
);
