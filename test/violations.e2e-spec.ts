import { Controller, INestApplication } from '@nestjs/common';
import { connect, Socket as NetSocket } from 'node:net';
import type { AddressInfo } from 'node:net';
import {
  Socket,
  WebSocketContext,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { closePayload, decodeFrame, encodeFrame, Opcode } from './utils/frames';
import { upgradeRequest } from './utils/raw-http';
import { startApp } from './utils/test-app';

const received: string[] = [];

@Controller()
class SinkController {
  @Ws('sink')
  async sink(@Socket() socket: WebSocketContext) {
    for await (const message of socket) received.push(message.text);
  }
}

/** Opens a WebSocket by hand and resolves once the 101 has arrived. */
async function handshake(
  port: number,
): Promise<{ socket: NetSocket; frames: () => Buffer }> {
  const socket = connect(port, '127.0.0.1');
  socket.write(upgradeRequest('/sink'));
  let bytes = Buffer.alloc(0);
  await new Promise<void>((resolve) =>
    socket.on('data', (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
      const end = bytes.indexOf('\r\n\r\n');
      if (end >= 0 && bytes.subarray(0, 12).toString() === 'HTTP/1.1 101') {
        bytes = bytes.subarray(end + 4);
        resolve();
      }
    }),
  );
  socket.removeAllListeners('data');
  socket.on('data', (chunk: Buffer) => (bytes = Buffer.concat([bytes, chunk])));
  return { socket, frames: () => bytes };
}

const invalidUtf8 = Buffer.from([
  0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0,
  0x80,
]);

describe('protocol violations from a raw TCP client (RFC 6455)', () => {
  let app: INestApplication;
  let port: number;

  beforeAll(async () => {
    ({ app } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [SinkController],
    }));
    port = (app.getHttpServer().address() as AddressInfo).port;
  });

  afterAll(() => app.close());

  it.each([
    [
      'an unmasked client frame',
      1002,
      [encodeFrame({ opcode: Opcode.Text, payload: 'x', masked: false })],
    ],
    ['a reserved opcode', 1002, [encodeFrame({ opcode: 0x3, payload: 'x' })]],
    [
      'RSV1 without a negotiated extension',
      1002,
      [encodeFrame({ opcode: Opcode.Text, payload: 'x', rsv: 0b100 })],
    ],
    [
      'RSV2 and RSV3',
      1002,
      [encodeFrame({ opcode: Opcode.Text, payload: 'x', rsv: 0b011 })],
    ],
    [
      'a control frame over 125 bytes',
      1002,
      [encodeFrame({ opcode: Opcode.Ping, payload: Buffer.alloc(126) })],
    ],
    [
      'a fragmented control frame',
      1002,
      [encodeFrame({ opcode: Opcode.Ping, payload: 'x', fin: false })],
    ],
    [
      'a continuation frame with no message to continue',
      1002,
      [encodeFrame({ opcode: Opcode.Continuation, payload: 'x' })],
    ],
    [
      'a new message inside a fragmented one',
      1002,
      [
        encodeFrame({ opcode: Opcode.Text, payload: 'a', fin: false }),
        encodeFrame({ opcode: Opcode.Text, payload: 'b' }),
      ],
    ],
    [
      'invalid UTF-8 in a text frame',
      1007,
      [encodeFrame({ opcode: Opcode.Text, payload: invalidUtf8 })],
    ],
    [
      'invalid UTF-8 across the fragments of a text message',
      1007,
      [
        encodeFrame({
          opcode: Opcode.Text,
          payload: invalidUtf8.subarray(0, 12),
          fin: false,
        }),
        encodeFrame({
          opcode: Opcode.Continuation,
          payload: invalidUtf8.subarray(12),
        }),
      ],
    ],
    [
      'a close frame with a reserved code (1005)',
      1002,
      [encodeFrame({ opcode: Opcode.Close, payload: closePayload(1005) })],
    ],
    [
      'a close frame with an invalid code (999)',
      1002,
      [encodeFrame({ opcode: Opcode.Close, payload: closePayload(999) })],
    ],
    [
      'a close frame with a one-byte payload',
      1002,
      [encodeFrame({ opcode: Opcode.Close, payload: Buffer.from([3]) })],
    ],
    [
      'a close frame with an invalid UTF-8 reason',
      1007,
      [
        encodeFrame({
          opcode: Opcode.Close,
          payload: closePayload(1000, invalidUtf8),
        }),
      ],
    ],
  ])(
    'closes with %s → %i, and the handler sees no data',
    async (_case, code, frames) => {
      received.length = 0;
      const { socket, frames: read } = await handshake(port);
      for (const frame of frames) socket.write(frame);
      await new Promise((resolve) => socket.on('close', resolve));
      const close = decodeFrame(read());
      expect(close?.opcode).toBe(Opcode.Close);
      expect(close?.payload.readUInt16BE(0)).toBe(code);
      await app.get(WebSocketSessions).settled();
      expect(received).toEqual([]);
    },
  );

  it('delivers a frame that arrives in the same TCP write as the upgrade request', async () => {
    received.length = 0;
    const socket = connect(port, '127.0.0.1');
    socket.write(
      Buffer.concat([
        Buffer.from(upgradeRequest('/sink')),
        encodeFrame({ opcode: Opcode.Text, payload: 'eager' }),
        encodeFrame({ opcode: Opcode.Close, payload: closePayload(1000) }),
      ]),
    );
    socket.on('data', () => undefined);
    await new Promise((resolve) => socket.on('close', resolve));
    await app.get(WebSocketSessions).settled();
    expect(received).toEqual(['eager']);
  });

  it('still accepts a well-formed masked, fragmented message after all that', async () => {
    received.length = 0;
    const { socket, frames: read } = await handshake(port);
    socket.write(
      encodeFrame({ opcode: Opcode.Text, payload: 'he', fin: false }),
    );
    socket.write(encodeFrame({ opcode: Opcode.Ping, payload: 'mid' }));
    socket.write(encodeFrame({ opcode: Opcode.Continuation, payload: 'llo' }));
    socket.write(
      encodeFrame({ opcode: Opcode.Close, payload: closePayload(1000) }),
    );
    await new Promise((resolve) => socket.on('close', resolve));
    await app.get(WebSocketSessions).settled();
    expect(received).toEqual(['hello']);
    expect(decodeFrame(read())?.opcode).toBe(Opcode.Pong);
  });
});
