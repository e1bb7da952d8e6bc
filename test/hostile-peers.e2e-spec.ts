import {
  Controller,
  INestApplication,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import { IsString } from 'class-validator';
import { once } from 'node:events';
import { constants as zlibConstants, deflateRawSync } from 'node:zlib';
import { connect, Socket as NetSocket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { defer, finalize, NEVER } from 'rxjs';
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
import { closePayload, encodeFrame, Opcode } from './utils/frames';
import { RawConnection, upgradeRequest } from './utils/raw-http';
import { platforms, startApp } from './utils/test-app';
import { transportOf } from './utils/transport-of';
import { until } from './utils/until';
import { within } from './utils/within';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Fast heartbeats, so that a dead peer is found within the test's time. */
const FAST_HEARTBEAT = { interval: 150, timeout: 150 };

/** Per test: the context each endpoint opened, and what its handler reported. */
let opened: Map<string, Deferred<WebSocketContext>>;
let seen: {
  release: Deferred;
  drained: Deferred<{ bytes: number[]; code?: number }>;
  blocked: Deferred;
  sendError: Deferred<unknown>;
  finalized: Deferred;
  generatorLeft: Deferred;
  subscribed: boolean;
};

function contextOf(name: string): Promise<WebSocketContext> {
  return within(opened.get(name)!.promise, 5000, `${name} was never opened`);
}

function open(name: string, socket: WebSocketContext): void {
  opened.get(name)!.resolve(socket);
}

const untilAborted = (socket: WebSocketContext) =>
  new Promise((resolve) =>
    socket.signal.addEventListener('abort', resolve, { once: true }),
  );

class NoteDto {
  @IsString() text!: string;
}

@Controller('peers')
class PeersController {
  @Ws('idle', { heartbeat: FAST_HEARTBEAT, inboundQueue: 4 })
  async idle(@Socket() socket: WebSocketContext) {
    open('idle', socket);
    await untilAborted(socket); // reads nothing
  }

  @Ws('drain-later', { heartbeat: false })
  async drainLater(@Socket() socket: WebSocketContext) {
    open('drain-later', socket);
    await seen.release.promise;
    const bytes: number[] = [];
    for await (const message of socket) bytes.push(message.data[0]);
    seen.drained.resolve({ bytes, code: socket.closeCode });
  }

  @Ws('patient', { heartbeat: FAST_HEARTBEAT, inboundQueue: 4 })
  async patient(@Socket() socket: WebSocketContext) {
    open('patient', socket);
    await seen.release.promise;
    let count = 0;
    for (let i = 0; i < 6; i++) {
      await socket.receive();
      count++;
    }
    await socket.send(`got ${count}`);
  }

  @Ws('echo', { heartbeat: false })
  async echo(@Socket() socket: WebSocketContext) {
    for await (const message of socket) await socket.send(message);
  }

  @Ws('hoard', { heartbeat: false })
  async hoard(@Socket() socket: WebSocketContext) {
    open('hoard', socket);
    await untilAborted(socket);
  }

  @Ws('hoard-deflate', { heartbeat: false, perMessageDeflate: true })
  async hoardDeflate(@Socket() socket: WebSocketContext) {
    open('hoard-deflate', socket);
    await untilAborted(socket);
  }

  @Ws('push-deflate', { perMessageDeflate: true, sendTimeout: 2000 })
  async pushDeflate(@Socket() socket: WebSocketContext) {
    for (let i = 0; i < 20; i++) await socket.send(Buffer.alloc(2 * MiB, i));
  }

  @Ws('push-small-mark', { sendHighWaterMark: 8 * KiB, sendTimeout: 2000 })
  async pushSmallMark(@Socket() socket: WebSocketContext) {
    const chunk = Buffer.alloc(4 * KiB);
    while (socket.bufferedAmount <= 8 * KiB) await socket.send(chunk);
    seen.blocked.resolve();
    try {
      await socket.send('last');
    } catch (error) {
      seen.sendError.resolve(error);
    }
  }

  @Ws('close-paused', { inboundQueue: 2, closeTimeout: 60_000 })
  async closePaused(@Socket() socket: WebSocketContext) {
    open('close-paused', socket);
    await seen.release.promise;
    await socket.close(4000, 'Bye');
  }

  @Ws('deadline')
  @UsePipes(new ValidationPipe())
  async deadline(@Socket() socket: WebSocketContext) {
    try {
      await socket.receive(NoteDto, { timeout: 300 });
      await socket.send({ outcome: 'received' });
    } catch (error) {
      await socket.send({ outcome: (error as Error).name });
    }
  }

  @Ws('never')
  never() {
    return NEVER.pipe(finalize(() => seen.finalized.resolve()));
  }

  @Ws('late-observable')
  async lateObservable(@Socket() socket: WebSocketContext) {
    await socket.closed;
    return defer(() => {
      seen.subscribed = true;
      return NEVER;
    });
  }

  @Ws('stuck-generator')
  async *stuckGenerator() {
    await new Promise(() => undefined); // awaits something that never comes
    yield 'never';
  }

  @Ws('waiting-generator')
  async *waitingGenerator() {
    try {
      await seen.release.promise;
      yield 'too late';
    } finally {
      seen.generatorLeft.resolve();
    }
  }
}

/** 64 KiB of pongs, which ws reads and drops: padding that fills a socket read around a frame. */
const PONGS = Buffer.concat(
  Array.from({ length: 520 }, () =>
    encodeFrame({ opcode: Opcode.Pong, payload: Buffer.alloc(125) }),
  ),
);

/** What the process holds outside V8's heap (buffers), after collecting what it can. */
function heldBuffers(): number {
  const gc = (globalThis as { gc?: () => void }).gc!;
  gc();
  gc();
  return process.memoryUsage().arrayBuffers;
}

/** Writes each of `frames` in a write of its own, padded with pongs, then waits until the server has read them all. */
async function writePadded(connection: RawConnection, frames: Buffer[]) {
  for (const frame of frames)
    await connection.write(Buffer.concat([frame, PONGS]));
  await connection.write(encodeFrame({ opcode: Opcode.Ping, payload: 'sync' }));
  for (;;) {
    const frame = await connection.nextFrame(5000);
    if (frame.opcode === Opcode.Pong && frame.payload.toString() === 'sync')
      return;
  }
}

/** Opens a WebSocket by hand, writes `frames`, then neither reads nor writes again. */
async function silentPeer(port: number, frames: Buffer[]): Promise<NetSocket> {
  const socket = connect(port, '127.0.0.1');
  socket.write(upgradeRequest('/peers/idle'));
  const [head] = (await once(socket, 'data')) as [Buffer];
  expect(head.toString()).toMatch(/^HTTP\/1.1 101/);
  for (const frame of frames) socket.write(frame);
  socket.pause();
  return socket;
}

describe.each(platforms)('hostile peers on %s', (platform) => {
  let app: INestApplication;
  let sessions: WebSocketSessions;

  beforeAll(async () => {
    ({ app } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({})],
        controllers: [PeersController],
      },
      undefined,
      platform,
    ));
    sessions = app.get(WebSocketSessions);
  });

  beforeEach(() => {
    opened = new Map(
      [
        'idle',
        'patient',
        'drain-later',
        'hoard',
        'hoard-deflate',
        'close-paused',
      ].map((name) => [name, new Deferred<WebSocketContext>()]),
    );
    seen = {
      release: new Deferred(),
      drained: new Deferred(),
      blocked: new Deferred(),
      sendError: new Deferred<unknown>(),
      finalized: new Deferred(),
      generatorLeft: new Deferred(),
      subscribed: false,
    };
  });

  afterAll(() => app.close());

  /** Every session has ended: its connection closed, its handler settled. */
  async function allSessionsEnded(): Promise<void> {
    await within(sessions.settled(), 5000, 'a session never ended');
    expect(sessions.size).toBe(0);
  }

  describe('peers that fill the inbound queue are reaped when they leave or go silent', () => {
    it.each([
      ['ends its side (FIN) without a close frame', 'end'],
      ['resets the connection', 'destroy'],
    ] as const)(
      'drops a peer that fills the queue and then %s',
      async (_case, how) => {
        const client = await connectWs(app, '/peers/idle');
        const context = await contextOf('idle');
        for (let i = 0; i < 20; i++) client.send('x'.repeat(KiB));
        await until(() => transportOf(context).paused, 'reading is paused');
        const raw = (client.ws as unknown as { _socket: NetSocket })._socket;
        if (how === 'end') raw.end();
        else raw.resetAndDestroy();
        await within(
          context.closed,
          3000,
          'the server never let go of the peer',
        );
        expect(context.closeCode).toBe(1006);
        await allSessionsEnded();
      },
    );

    it('drops a peer that fills the queue and then goes silent, within interval + timeout', async () => {
      const { port } = app.getHttpServer().address() as AddressInfo;
      const frames = Array.from({ length: 20 }, () =>
        encodeFrame({ opcode: Opcode.Text, payload: 'x'.repeat(KiB) }),
      );
      const peer = await silentPeer(port, frames);
      const context = await contextOf('idle');
      await until(() => transportOf(context).paused, 'reading is paused');
      await within(context.closed, 3000, 'the server never dropped the peer');
      expect(context.closeCode).toBe(1006);
      peer.destroy();
      await allSessionsEnded();
    });

    it('keeps a live peer whose queue is full while the handler does not read, and delivers everything later', async () => {
      const client = await connectWs(app, '/peers/patient');
      const context = await contextOf('patient');
      for (let i = 0; i < 6; i++) client.send(`m${i}`);
      await until(() => transportOf(context).paused, 'reading is paused');
      // three heartbeats answered while the queue stays full
      for (let pings = 0; pings < 3; pings++) await once(client.ws, 'ping');
      seen.release.resolve();
      expect((await client.next()).text).toBe('got 6');
      expect(await client.closed).toEqual({ code: 1000, reason: '' });
    });

    it('drops a peer whose pong stays behind more than twice the bound of unread messages', async () => {
      const client = await connectWs(app, '/peers/idle');
      const context = await contextOf('idle');
      for (let i = 0; i < 50; i++) client.send(`m${i}`);
      await within(context.closed, 3000, 'the server never dropped the peer');
      expect(context.closeCode).toBe(1006);
      expect(transportOf(context).inbound.size).toBeLessThan(50);
      await client.closed;
      await allSessionsEnded();
    });
  });

  describe('unread data is bounded in bytes, counted after decompression', () => {
    it('stops reading once one message of maxPayload waits unread', async () => {
      const client = await connectWs(app, '/peers/hoard');
      const context = await contextOf('hoard');
      for (let i = 0; i < 256; i++) client.send(Buffer.alloc(16 * KiB, i));
      await until(() => transportOf(context).paused, 'reading is paused');
      // one message of maxPayload (64 KiB), and those ws had read from the socket when reading
      // paused: at most one read of 64 KiB
      expect(transportOf(context).inbound.bytes).toBeLessThanOrEqual(
        64 * KiB + 64 * KiB,
      );
      // with heartbeats off, a paused connection is only let go by the server (or the handler)
      context.terminate();
      await allSessionsEnded();
    });

    it('holds about one message when compressed messages inflate far beyond their size on the wire', async () => {
      const client = await connectWs(app, '/peers/hoard-deflate', {
        perMessageDeflate: true,
      });
      const context = await contextOf('hoard-deflate');
      // 128 MiB of zeros, some 300 KiB on the wire: unbounded, 0.3 MiB would pin 128 MiB
      for (let i = 0; i < 2048; i++) client.send(Buffer.alloc(64 * KiB));
      await until(() => transportOf(context).paused, 'reading is paused');
      // the message that paused reading, at most one whose inflation was under way, and one more
      // that may complete from what ws had read
      expect(transportOf(context).inbound.bytes).toBeLessThanOrEqual(
        3 * 64 * KiB,
      );
      context.terminate();
      await allSessionsEnded();
    });
  });

  describe('bytes held are bytes counted: nothing keeps a whole socket read alive for a small part of it', () => {
    async function rawSession(path: string) {
      const connection = await RawConnection.open(app);
      await connection.write(upgradeRequest(path));
      expect((await connection.nextResponse()).status).toBe(101);
      return connection;
    }

    it('copies a fragment that waits for the rest of its message out of its socket read', async () => {
      const connection = await rawSession('/peers/echo');
      const before = heldBuffers();
      await writePadded(connection, [
        encodeFrame({ opcode: Opcode.Binary, payload: 'a', fin: false }),
        ...Array.from({ length: 200 }, () =>
          encodeFrame({
            opcode: Opcode.Continuation,
            payload: 'b',
            fin: false,
          }),
        ),
      ]);
      // 200 reads of 64 KiB would be 12.5 MiB
      expect(heldBuffers() - before).toBeLessThan(2 * MiB);
      await connection.write(
        encodeFrame({ opcode: Opcode.Continuation, payload: 'c' }),
      );
      const echo = await connection.nextFrame();
      expect(echo.payload.toString()).toBe(`a${'b'.repeat(200)}c`);
      connection.destroy();
      await allSessionsEnded();
    });

    it('copies a queued message out of its socket read', async () => {
      const connection = await rawSession('/peers/hoard');
      const context = await contextOf('hoard');
      const before = heldBuffers();
      await writePadded(
        connection,
        Array.from({ length: 60 }, () =>
          encodeFrame({ opcode: Opcode.Binary, payload: 'x' }),
        ),
      );
      expect(transportOf(context).inbound.size).toBe(60);
      // 60 reads of 64 KiB would be 3.75 MiB
      expect(heldBuffers() - before).toBeLessThan(MiB);
      context.terminate();
      connection.destroy();
      await allSessionsEnded();
    });
  });

  describe("ws's parser stops with the socket: the bound of unread messages holds for tiny frames", () => {
    const tiny = (count: number) =>
      Array.from({ length: count }, (_, i) =>
        encodeFrame({ opcode: Opcode.Binary, payload: Buffer.from([i % 256]) }),
      );

    it('holds no more than the bound of 20,000 one-byte frames written at once, and delivers them all in order later', async () => {
      const connection = await RawConnection.open(app);
      await connection.write(upgradeRequest('/peers/drain-later'));
      expect((await connection.nextResponse()).status).toBe(101);
      const context = await contextOf('drain-later');
      await connection.write(Buffer.concat(tiny(20_000)));
      await until(() => transportOf(context).paused, 'reading is paused');
      // without the stop, the rest of the socket read: some 9,000 messages
      expect(transportOf(context).inbound.size).toBeLessThanOrEqual(64 + 1);
      seen.release.resolve();
      await connection.write(
        encodeFrame({ opcode: Opcode.Close, payload: closePayload(1000) }),
      );
      const { bytes, code } = await within(
        seen.drained.promise,
        10_000,
        'the handler never drained',
      );
      expect(bytes).toEqual(Array.from({ length: 20_000 }, (_, i) => i % 256));
      expect(code).toBe(1000);
      connection.destroy();
    });

    it('still finds a protocol violation among what it had read when it stopped', async () => {
      const connection = await RawConnection.open(app);
      await connection.write(upgradeRequest('/peers/drain-later'));
      expect((await connection.nextResponse()).status).toBe(101);
      const context = await contextOf('drain-later');
      await connection.write(
        Buffer.concat([
          ...tiny(1000),
          encodeFrame({ opcode: Opcode.Text, payload: 'x', masked: false }),
        ]),
      );
      await until(() => transportOf(context).paused, 'reading is paused');
      seen.release.resolve();
      const { bytes, code } = await within(
        seen.drained.promise,
        10_000,
        'the handler never drained',
      );
      expect(bytes).toHaveLength(1000);
      expect(code).toBeDefined();
      const close = await connection.nextFrame();
      expect([close.opcode, close.payload.readUInt16BE(0)]).toEqual([
        Opcode.Close,
        1002,
      ]);
      connection.destroy();
    });

    it('keeps to the bound when a peer that paused reading resets with compressed frames unread', async () => {
      const connection = await RawConnection.open(app);
      await connection.write(
        upgradeRequest('/peers/hoard-deflate', {
          'Sec-WebSocket-Extensions':
            'permessage-deflate; client_no_context_takeover',
        }),
      );
      expect((await connection.nextResponse()).status).toBe(101);
      const context = await contextOf('hoard-deflate');
      const inflated = deflateRawSync(Buffer.alloc(64 * KiB), {
        finishFlush: zlibConstants.Z_SYNC_FLUSH,
      });
      const bomb = encodeFrame({
        opcode: Opcode.Binary,
        payload: inflated.subarray(0, inflated.length - 4),
        rsv: 0b100,
      });
      await connection.write(
        Buffer.concat(Array.from({ length: 4000 }, () => bomb)),
      );
      await until(() => transportOf(context).paused, 'reading is paused');
      connection.socket.resetAndDestroy();
      context.terminate(); // heartbeats are off here: the server learns of the reset by writing
      await within(context.closed, 5000, 'never closed');
      expect(transportOf(context).inbound.bytes).toBeLessThanOrEqual(
        3 * 64 * KiB,
      );
      await allSessionsEnded();
    });
  });

  describe('backpressure measures what waits to be sent', () => {
    it('delivers 20 sends of 2 MiB with permessage-deflate to a client that reads them all', async () => {
      const client = await connectWs(app, '/peers/push-deflate', {
        perMessageDeflate: true,
      });
      let received = 0;
      client.ws.on('message', () => received++);
      expect(await client.closed).toEqual({ code: 1000, reason: '' });
      expect(received).toBe(20);
    });

    it('lets a send wait out a peer that stops reading for a while under a sendHighWaterMark below 16 KiB', async () => {
      const client = await connectWs(app, '/peers/push-small-mark');
      client.ws.pause();
      await within(seen.blocked.promise, 5000, 'the handler never blocked');
      let last = false;
      client.ws.on(
        'message',
        (data: Buffer) => (last ||= data.toString() === 'last'),
      );
      client.ws.resume();
      expect(await client.closed).toEqual({ code: 1000, reason: '' });
      expect(last).toBe(true);
    });

    it('closes a connection whose reading is paused without waiting for closeTimeout', async () => {
      const client = await connectWs(app, '/peers/close-paused');
      const context = await contextOf('close-paused');
      for (let i = 0; i < 20; i++) client.send(`m${i}`);
      await until(() => transportOf(context).paused, 'reading is paused');
      seen.release.resolve();
      expect(
        await within(client.closed, 5000, 'the close never completed'),
      ).toEqual({ code: 4000, reason: 'Bye' });
      await within(context.closed, 5000, 'the server never saw the close');
      expect(context.closeCode).toBe(4000);
    });

    it('keeps the deadline of one receive() while rejected messages keep arriving', async () => {
      const client = await connectWs(app, '/peers/deadline');
      const outcome = new Deferred<unknown>();
      client.ws.on('message', (data: Buffer) => {
        const message = JSON.parse(data.toString());
        if (message.error)
          client.send({ text: 42 }); // invalid again, at once
        else outcome.resolve(message.outcome);
      });
      client.send({ text: 42 });
      expect(
        await within(outcome.promise, 5000, 'receive() never timed out'),
      ).toBe('TimeoutError');
      await client.closed;
    });
  });

  describe('no session outlives its connection', () => {
    it('unsubscribes an Observable that never emits when the peer goes', async () => {
      const client = await connectWs(app, '/peers/never');
      client.ws.terminate();
      await within(
        seen.finalized.promise,
        5000,
        'the Observable was never unsubscribed',
      );
      await allSessionsEnded();
    });

    it('ends the session of an Observable returned after the peer went, without subscribing to it', async () => {
      const client = await connectWs(app, '/peers/late-observable');
      client.ws.terminate();
      await allSessionsEnded();
      expect(seen.subscribed).toBe(false);
    });

    it('ends the session of an async generator that awaits something else when the peer goes', async () => {
      const client = await connectWs(app, '/peers/stuck-generator');
      client.ws.terminate();
      await allSessionsEnded();
    });

    it('lets an async generator run its finally once what it awaited settles after the peer went', async () => {
      const client = await connectWs(app, '/peers/waiting-generator');
      client.ws.terminate();
      await allSessionsEnded();
      seen.release.resolve();
      await within(
        seen.generatorLeft.promise,
        5000,
        'the generator never left',
      );
    });
  });

  it('rejects the waiting send with 1013, not 1006, when the peer is closed as a slow consumer', async () => {
    const client = await connectWs(app, '/peers/push-small-mark');
    client.ws.pause();
    await within(seen.blocked.promise, 5000, 'the handler never blocked');
    const error = await within(
      seen.sendError.promise,
      5000,
      'the send never failed',
    );
    expect(error).toBeInstanceOf(WebSocketDisconnect);
    expect(error).toMatchObject({ code: 1013, reason: 'Slow consumer' });
    client.ws.resume();
    expect(await client.closed).toEqual({
      code: 1013,
      reason: 'Slow consumer',
    });
  });
});
