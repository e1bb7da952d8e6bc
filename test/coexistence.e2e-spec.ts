import { Controller, INestApplication } from '@nestjs/common';
import {
  MessageBody,
  SubscribeMessage,
  WebSocketGateway,
} from '@nestjs/websockets';
import type { AddressInfo } from 'node:net';
import { io } from 'socket.io-client';
import { WebSocketServer } from 'ws';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, expectRejected } from 'nestjs-ws-endpoints/testing';
import { platforms, startApp } from './utils/test-app';

@Controller()
class EchoController {
  @Ws('echo')
  async echo(@Socket() socket: WebSocketContext) {
    for await (const message of socket)
      await socket.send(`ours: ${message.text}`);
  }
}

/** A Socket.IO gateway: the default adapter once @nestjs/platform-socket.io is installed. */
@WebSocketGateway()
class PingGateway {
  @SubscribeMessage('ping')
  ping(@MessageBody() data: string) {
    return `pong ${data}`;
  }
}

async function expectOurs(app: INestApplication) {
  const client = await connectWs(app, '/echo');
  client.send('hi');
  expect((await client.next()).text).toBe('ours: hi');
  await client.close();
}

describe.each(platforms)(
  'a Socket.IO gateway on the same server and port, on %s',
  (platform) => {
    let app: INestApplication;

    beforeAll(async () => {
      ({ app } = await startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [EchoController],
          providers: [PingGateway],
        },
        undefined,
        platform,
      ));
    });

    afterAll(() => app.close());

    it('keeps working next to @Ws endpoints, and so do they', async () => {
      const { port } = app.getHttpServer().address() as AddressInfo;
      const client = io(`http://127.0.0.1:${port}`, {
        transports: ['websocket'],
        reconnection: false,
      });
      try {
        expect(await client.timeout(5000).emitWithAck('ping', 'x')).toBe(
          'pong x',
        );
      } finally {
        client.close();
      }
      await expectOurs(app);
    });
  },
);

describe.each(platforms)(
  'a ws WebSocketServer attached by hand to the same server, on %s',
  (platform) => {
    let app: INestApplication;
    let raw: WebSocketServer;

    beforeAll(async () => {
      ({ app } = await startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [EchoController],
        },
        (app) => {
          raw = new WebSocketServer({
            server: app.getHttpServer(),
            path: '/raw',
          });
          raw.on('connection', (ws) =>
            ws.on('message', (data: Buffer) =>
              ws.send(`raw: ${data.toString()}`),
            ),
          );
        },
        platform,
      ));
    });

    afterAll(async () => {
      raw.close();
      await app.close();
    });

    it('keeps working next to @Ws endpoints, and so do they', async () => {
      const client = await connectWs(app, '/raw');
      client.send('hi');
      expect((await client.next()).text).toBe('raw: hi');
      await client.close();
      await expectOurs(app);
    });

    it('answers the paths nobody owns (ws says 400), never ours', async () => {
      await expectRejected(app, '/nobody', 400);
    });
  },
);
