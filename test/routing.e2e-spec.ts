import {
  Controller,
  Get,
  INestApplication,
  Module,
  Param,
  Version,
  VersioningType,
} from '@nestjs/common';
import { RouterModule } from '@nestjs/core';
import { WsAdapter } from '@nestjs/platform-ws';
import {
  MessageBody,
  SubscribeMessage,
  WebSocketGateway,
} from '@nestjs/websockets';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, expectRejected } from 'nestjs-ws-endpoints/testing';
import { rawRequest, upgradeRequest } from './utils/raw-http';
import { platforms, startApp } from './utils/test-app';

@Controller('echo')
class EchoController {
  @Ws()
  async root(@Socket() socket: WebSocketContext) {
    await socket.send('root');
  }

  @Ws('rooms/:room/users/:user')
  async room(@Socket() socket: WebSocketContext, @Param('room') room: string) {
    await socket.send({ room, params: socket.params });
  }

  @Version('2')
  @Ws('versioned')
  async versioned(@Socket() socket: WebSocketContext) {
    await socket.send('v2');
  }

  @Ws(['one', 'two'])
  async several(@Socket() socket: WebSocketContext) {
    await socket.send(new URL(socket.request.url!, 'ws://x').pathname);
  }
}

@Controller('feed')
class FeedController {
  @Ws()
  async feed(@Socket() socket: WebSocketContext) {
    await socket.send('feed');
  }
}

@Module({ controllers: [FeedController] })
class FeedModule {}

@WebSocketGateway({ path: '/gateway' })
class PingGateway {
  @SubscribeMessage('ping')
  ping(@MessageBody() data: unknown) {
    return { event: 'pong', data };
  }
}

describe.each(platforms)('routing on %s', (platform) => {
  let app: INestApplication;

  afterEach(() => app?.close());

  describe('with a global prefix, URI versioning and a RouterModule path', () => {
    beforeEach(async () => {
      ({ app } = await startApp(
        {
          imports: [
            WsEndpointsModule.forRoot({}),
            FeedModule,
            RouterModule.register([{ path: 'modules', module: FeedModule }]),
          ],
          controllers: [EchoController],
        },
        (app) => {
          app.setGlobalPrefix('api');
          app.enableVersioning({
            type: VersioningType.URI,
            defaultVersion: '1',
          });
        },
        platform,
      ));
    });

    it('composes the global prefix, version, controller path and method path', async () => {
      const client = await connectWs(app, '/api/v1/echo');
      expect((await client.next()).text).toBe('root');
      expect(await client.closed).toEqual({ code: 1000, reason: '' });
    });

    it('matches :params and gives them to @Param and socket.params', async () => {
      const client = await connectWs(
        app,
        '/api/v1/echo/rooms/general/users/42?x=1',
      );
      expect(await client.nextJson()).toEqual({
        room: 'general',
        params: { room: 'general', user: '42' },
      });
    });

    it('serves a method version over the default version', async () => {
      const client = await connectWs(app, '/api/v2/echo/versioned');
      expect((await client.next()).text).toBe('v2');
      await expectRejected(app, '/api/v1/echo/versioned', 404);
    });

    it('serves each of several paths', async () => {
      for (const path of ['/api/v1/echo/one', '/api/v1/echo/two']) {
        const client = await connectWs(app, path);
        expect((await client.next()).text).toBe(path);
      }
    });

    it('puts a RouterModule path in front of the controller path', async () => {
      const client = await connectWs(app, '/api/v1/modules/feed');
      expect((await client.next()).text).toBe('feed');
    });

    it('answers 404 to an upgrade on an unknown path when no other upgrade listener exists', async () => {
      const { body } = await expectRejected(app, '/api/v1/nowhere', 404);
      expect(body).toEqual({
        statusCode: 404,
        error: 'Not Found',
        message: 'Cannot GET /api/v1/nowhere',
      });
    });

    it('answers 426 Upgrade Required to a plain GET on a ws route', async () => {
      const response = await rawRequest(
        app,
        'GET /api/v1/echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
      );
      expect(response.status).toBe(426);
      expect(response.headers.upgrade).toBe('websocket');
      expect(JSON.parse(response.body)).toMatchObject({ statusCode: 426 });
    });

    it.each([
      [
        'no Sec-WebSocket-Key',
        { 'Sec-WebSocket-Key': null },
        'Sec-WebSocket-Key',
      ],
      [
        'a malformed Sec-WebSocket-Key',
        { 'Sec-WebSocket-Key': 'short' },
        'Sec-WebSocket-Key',
      ],
      [
        'an unsupported version',
        { 'Sec-WebSocket-Version': '99' },
        'Sec-WebSocket-Version',
      ],
    ])('answers 400 to an upgrade with %s', async (_case, headers, named) => {
      const response = await rawRequest(
        app,
        upgradeRequest('/api/v1/echo', headers),
      );
      expect(response.status).toBe(400);
      expect(JSON.parse(response.body)).toMatchObject({
        statusCode: 400,
        message: expect.stringContaining(named),
      });
    });
  });

  it('fails at bootstrap when two endpoints share a path, naming both', async () => {
    @Controller('echo')
    class OtherEchoController {
      @Ws('rooms/:room/users/:user')
      async clash() {}
    }
    await expect(
      startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [EchoController, OtherEchoController],
        },
        undefined,
        platform,
      ),
    ).rejects.toThrow(
      'WebSocket path "/echo/rooms/:room/users/:user" is declared by both EchoController.room and OtherEchoController.clash.',
    );
  });

  it('leaves upgrades it does not own to a WsAdapter gateway on the same server', async () => {
    ({ app } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({})],
        controllers: [EchoController],
        providers: [PingGateway],
      },
      (app) => app.useWebSocketAdapter(new WsAdapter(app)),
      platform,
    ));
    const gateway = await connectWs(app, '/gateway');
    gateway.send({ event: 'ping', data: 7 });
    expect(await gateway.nextJson()).toEqual({ event: 'pong', data: 7 });

    const ours = await connectWs(app, '/echo');
    expect((await ours.next()).text).toBe('root');
    await gateway.close();
  });
});

@Controller('orders')
class OrdersController {
  @Get(':id')
  order(@Param('id') id: string) {
    return { order: id };
  }

  @Ws('live')
  async live(@Socket() socket: WebSocketContext) {
    await socket.send('live');
  }
}

@Controller()
class SpaController {
  @Get('*path')
  fallback() {
    return 'spa';
  }
}

const plainGet = (path: string) =>
  `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;

describe.each(platforms)(
  '@Ws routes next to HTTP routes that match the same path, on %s',
  (platform) => {
    let app: INestApplication;

    beforeAll(async () => {
      ({ app } = await startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [OrdersController],
        },
        undefined,
        platform,
      ));
    });

    afterAll(() => app?.close());

    it('routes an upgrade to the @Ws method, not to a @Get(":id") declared before it', async () => {
      const client = await connectWs(app, '/orders/live');
      expect((await client.next()).text).toBe('live');
    });

    it('leaves the HTTP route its requests, and answers a plain GET on the ws path 426', async () => {
      expect(
        JSON.parse((await rawRequest(app, plainGet('/orders/42'))).body),
      ).toEqual({ order: '42' });
      expect((await rawRequest(app, plainGet('/orders/live'))).status).toBe(
        426,
      );
    });
  },
);

describe('@Ws routes next to an Express catch-all (an SPA fallback) declared first', () => {
  it('still get their upgrades, while the catch-all serves everything else', async () => {
    const { app } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [SpaController, OrdersController],
    });
    const client = await connectWs(app, '/orders/live');
    expect((await client.next()).text).toBe('live');
    expect((await rawRequest(app, plainGet('/somewhere'))).body).toBe('spa');
    await app.close();
  });
});

describe('invalid options', () => {
  it.each([
    [
      { inboundQueue: 0 },
      'Invalid WebSocket option inboundQueue of Bad.handler: expected a whole number of messages ≥ 1, got 0.',
    ],
    [
      { maxPayload: -5 },
      'Invalid WebSocket option maxPayload of Bad.handler: expected a whole number of bytes ≥ 1, got -5.',
    ],
    [
      { heartbeat: { interval: 0, timeout: 5 } },
      'Invalid WebSocket option heartbeat of Bad.handler',
    ],
    [
      { validation: 'ignore' as never },
      "expected 'reply' or 'close', got \"ignore\".",
    ],
    [
      { allowedOrigins: 'localhost' as never },
      'Invalid WebSocket option allowedOrigins of Bad.handler',
    ],
  ])(
    'fails at bootstrap on %j, naming the endpoint and the option',
    async (options, message) => {
      @Controller()
      class Bad {
        @Ws('bad', options)
        async handler() {}
      }
      await expect(
        startApp({
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [Bad],
        }),
      ).rejects.toThrow(message);
    },
  );

  it.each([
    ['shutdownTimeout', { shutdownTimeout: -1 }],
    ['handshakeTimeout', { handshakeTimeout: 0 }],
  ])('fails at bootstrap on a module option: %s', async (name, options) => {
    await expect(
      startApp({ imports: [WsEndpointsModule.forRoot(options)] }),
    ).rejects.toThrow(`Invalid WebSocket option ${name} of WsEndpointsModule`);
  });
});
