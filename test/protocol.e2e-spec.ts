import { Controller, INestApplication } from '@nestjs/common';
import { once } from 'node:events';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  Socket,
  WebSocketContext,
  WebSocketDisconnect,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, expectRejected } from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { rawRequest, upgradeRequest } from './utils/raw-http';
import { CapturedLogs, startApp } from './utils/test-app';

const seen = {
  deadPeer: new Deferred<unknown>(),
  unanswered: new Deferred<number | undefined>(),
};

async function echo(socket: WebSocketContext) {
  for await (const message of socket) {
    await socket.send(message.type === 'binary' ? message.data : message.text);
  }
}

@Controller('p')
class ProtocolController {
  @Ws('heartbeat', { heartbeat: { interval: 20, timeout: 20 } })
  async heartbeat(@Socket() socket: WebSocketContext) {
    seen.deadPeer.resolve(
      await socket.receive().catch((error: unknown) => error),
    );
  }

  @Ws('no-heartbeat', { heartbeat: false })
  async noHeartbeat(@Socket() socket: WebSocketContext) {
    await echo(socket);
  }

  @Ws('unanswered', { closeTimeout: 50 })
  async unanswered(@Socket() socket: WebSocketContext) {
    await socket.close(1000, 'Bye');
    seen.unanswered.resolve(socket.closeCode);
  }

  @Ws('echo')
  async echo(@Socket() socket: WebSocketContext) {
    await echo(socket);
  }

  @Ws('list', { allowedOrigins: ['https://app.example'] })
  async list(@Socket() socket: WebSocketContext) {
    await echo(socket);
  }

  @Ws('regexp', { allowedOrigins: /^https:\/\/[a-z]+\.example$/ })
  async regexp(@Socket() socket: WebSocketContext) {
    await echo(socket);
  }

  @Ws('function', { allowedOrigins: (origin) => origin.endsWith(':8443') })
  async fn(@Socket() socket: WebSocketContext) {
    await echo(socket);
  }

  @Ws('any', { allowedOrigins: '*' })
  async any(@Socket() socket: WebSocketContext) {
    await echo(socket);
  }

  @Ws('chat', { protocols: ['chat.v2', 'chat.v1'] })
  async chat(@Socket() socket: WebSocketContext) {
    await socket.send(socket.protocol);
  }

  @Ws('lenient', { protocols: ['chat.v2'], rejectUnknownProtocols: false })
  async lenient(@Socket() socket: WebSocketContext) {
    await socket.send(socket.protocol);
  }

  @Ws('deflate', { perMessageDeflate: true, maxPayload: 4 * 1024 * 1024 })
  async deflate(@Socket() socket: WebSocketContext) {
    await echo(socket);
  }

  @Ws('fragments')
  async fragments(@Socket() socket: WebSocketContext) {
    await socket.send('hel', { fin: false });
    await socket.send('lo, ', { fin: false });
    await socket.send('world', { fin: true });
    await echo(socket);
  }

  @Ws('many-fragments', { maxFragments: 70_000, maxPayload: 8 * 1024 * 1024 })
  async manyFragments(@Socket() socket: WebSocketContext) {
    for await (const message of socket)
      await socket.send(`${message.data.length}`);
  }

  @Ws('big', { maxPayload: 8 * 1024 * 1024 })
  async big(@Socket() socket: WebSocketContext) {
    for await (const message of socket)
      await socket.send(`${message.data.length}`);
  }
}

describe('protocol behaviour', () => {
  let app: INestApplication;
  let logs: CapturedLogs;
  let port: number;

  beforeAll(async () => {
    ({ app, logs } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [ProtocolController],
    }));
    port = (app.getHttpServer().address() as AddressInfo).port;
  });

  afterAll(() => app.close());

  describe('heartbeat', () => {
    it('drops a peer that stops answering pings: the pending receive() rejects with 1006', async () => {
      const quiet = await connectWs(app, '/p/no-heartbeat', {
        autoPong: false,
      });
      let pingsOnQuiet = 0;
      quiet.ws.on('ping', () => pingsOnQuiet++);
      const dead = await connectWs(app, '/p/heartbeat', { autoPong: false });
      expect((await dead.closed).code).toBe(1006);
      const error = await seen.deadPeer.promise;
      expect(error).toBeInstanceOf(WebSocketDisconnect);
      expect(error).toMatchObject({ code: 1006 });
      // the endpoint with heartbeats off sent no ping meanwhile and is still open
      expect(pingsOnQuiet).toBe(0);
      quiet.send('alive');
      expect((await quiet.next()).text).toBe('alive');
      await quiet.close();
    });

    it('keeps a peer that answers pings', async () => {
      const client = await connectWs(app, '/p/heartbeat');
      for (let i = 0; i < 3; i++) await once(client.ws, 'ping');
      expect(client.ws.readyState).toBe(client.ws.OPEN);
      await client.close();
    });
  });

  describe('close handshake', () => {
    it('answers a client-initiated close with the same code and reason', async () => {
      const client = await connectWs(app, '/p/echo');
      expect(await client.close(4005, 'See you')).toEqual({
        code: 4005,
        reason: 'See you',
      });
    });

    it('drops a peer that never answers the close frame after closeTimeout', async () => {
      const socket = connect(port, '127.0.0.1');
      socket.write(upgradeRequest('/p/unanswered'));
      socket.on('data', () => undefined); // reads, never answers
      await once(socket, 'close');
      expect(await seen.unanswered.promise).toBe(1006);
    });
  });

  describe('origins', () => {
    const from = (origin: string) => ({ origin });

    it('accepts an Origin of the same host by default, and requests without Origin', async () => {
      await (
        await connectWs(app, '/p/echo', from(`http://127.0.0.1:${port}`))
      ).close();
      await (await connectWs(app, '/p/echo')).close();
    });

    it('refuses another host with 403 by default, logging the origin and how to allow it', async () => {
      const { body } = await expectRejected(
        app,
        '/p/echo',
        403,
        from('https://evil.example'),
      );
      expect(body).toMatchObject({ statusCode: 403 });
      const [line] = logs.find('warn', 'https://evil.example');
      expect(line.message).toContain('allowedOrigins');
    });

    it.each([
      ['a list', '/p/list', 'https://app.example', 'https://other.example'],
      [
        'a RegExp',
        '/p/regexp',
        'https://shop.example',
        'https://shop.example.com',
      ],
      [
        'a function',
        '/p/function',
        'https://x.example:8443',
        'https://x.example',
      ],
    ])('applies %s', async (_kind, path, allowed, refused) => {
      await (await connectWs(app, path, from(allowed))).close();
      await expectRejected(app, path, 403, from(refused));
    });

    it("accepts any origin with '*'", async () => {
      await (
        await connectWs(app, '/p/any', from('https://anywhere.example'))
      ).close();
    });
  });

  describe('subprotocols', () => {
    it("selects the server's preferred protocol among those offered and echoes it", async () => {
      const client = await connectWs(app, '/p/chat', {
        protocols: ['chat.v1', 'chat.v2'],
      });
      expect(client.ws.protocol).toBe('chat.v2');
      expect((await client.next()).text).toBe('chat.v2');
      const older = await connectWs(app, '/p/chat', { protocols: ['chat.v1'] });
      expect((await older.next()).text).toBe('chat.v1');
    });

    it('refuses a client that offers only unknown protocols with 400', async () => {
      const { body } = await expectRejected(app, '/p/chat', 400, {
        protocols: ['mqtt'],
      });
      expect(body.message).toBe(
        'None of the offered subprotocols (mqtt) is supported; this endpoint speaks chat.v2, chat.v1.',
      );
    });

    it('accepts it without a protocol when rejectUnknownProtocols is false', async () => {
      const response = await rawRequest(
        app,
        upgradeRequest('/p/lenient', { 'Sec-WebSocket-Protocol': 'mqtt' }),
        { closeAfterHead: true },
      );
      expect(response.status).toBe(101);
      expect(response.headers['sec-websocket-protocol']).toBeUndefined();
    });

    it('sends no Sec-WebSocket-Protocol when none was offered', async () => {
      const response = await rawRequest(app, upgradeRequest('/p/chat'), {
        closeAfterHead: true,
      });
      expect(response.status).toBe(101);
      expect(response.headers['sec-websocket-protocol']).toBeUndefined();
    });
  });

  describe('compression', () => {
    it('negotiates permessage-deflate where enabled and round-trips large text', async () => {
      const client = await connectWs(app, '/p/deflate', {
        perMessageDeflate: true,
      });
      expect(client.ws.extensions).toContain('permessage-deflate');
      const text = 'compressible '.repeat(200_000);
      client.send(text);
      expect((await client.next()).text).toBe(text);
      await client.close();
    });

    it('is off by default', async () => {
      const client = await connectWs(app, '/p/echo', {
        perMessageDeflate: true,
      });
      expect(client.ws.extensions).toBe('');
      await client.close();
    });
  });

  describe('binary and fragments', () => {
    it('round-trips Buffer, ArrayBuffer and Uint8Array as binary and text as text', async () => {
      const client = await connectWs(app, '/p/echo');
      const bytes = [0, 1, 254, 255];
      for (const payload of [
        Buffer.from(bytes),
        new Uint8Array(bytes).buffer,
        new Uint8Array(bytes),
      ]) {
        client.ws.send(payload);
        const reply = await client.next();
        expect([reply.isBinary, [...reply.data]]).toEqual([true, bytes]);
      }
      client.send('text');
      expect(await client.next()).toMatchObject({
        isBinary: false,
        text: 'text',
      });
      await client.close();
    });

    it('streams one message in pieces with send(chunk, { fin: false })', async () => {
      const client = await connectWs(app, '/p/fragments');
      expect((await client.next()).text).toBe('hello, world');
      await client.close();
    });

    it('receives a fragmented client message whole', async () => {
      const client = await connectWs(app, '/p/fragments');
      await client.next();
      client.ws.send('frag', { fin: false });
      client.ws.send('men', { fin: false });
      client.ws.send('ted', { fin: true });
      expect((await client.next()).text).toBe('fragmented');
      await client.close();
    });

    function sendInPieces(
      client: { ws: { send(data: Buffer, options: { fin: boolean }): void } },
      size: number,
      piece: number,
    ) {
      const message = Buffer.alloc(size, 7);
      for (let offset = 0; offset < size; offset += piece) {
        client.ws.send(message.subarray(offset, offset + piece), {
          fin: offset + piece >= size,
        });
      }
    }

    it('closes with 1008 when a message comes in more than maxFragments pieces (1,024 by default)', async () => {
      const client = await connectWs(app, '/p/big');
      sendInPieces(client, 4 * 1024 * 1024, 64);
      expect((await client.closed).code).toBe(1008);
    });

    it('accepts a 4 MiB message in 64-byte pieces with maxFragments raised', async () => {
      const client = await connectWs(app, '/p/many-fragments');
      sendInPieces(client, 4 * 1024 * 1024, 64);
      expect((await client.next()).text).toBe(String(4 * 1024 * 1024));
      await client.close();
    });
  });
});
