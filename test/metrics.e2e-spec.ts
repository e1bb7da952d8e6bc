import { Controller, INestApplication, Param } from '@nestjs/common';
import type { Attributes } from '@opentelemetry/api';
import { EventEmitter } from 'node:events';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
  WsMetrics,
} from 'nestjs-ws-endpoints';
import { connectWs } from 'nestjs-ws-endpoints/testing';
import type { WsTestClient } from 'nestjs-ws-endpoints/testing';
import { type Collected, GlobalMeterProvider } from './utils/otel-metrics';
import { platforms, startApp } from './utils/test-app';
import { within } from './utils/within';

const METER = 'nestjs-ws-endpoints';
const HIGH_WATER_MARK = 16 * 1024;
const ECHO = { 'http.route': '/metered/echo' };
const ROOM = { 'http.route': '/metered/rooms/:room' };
const STREAM = { 'http.route': '/metered/stream' };

/** Where the handlers tell that their session ended (its close is counted by then). */
const handlers = new EventEmitter();

/** Resolves once `count` more handlers have ended; fails loudly after 5 s. */
function handlersEnd(count: number): Promise<void> {
  let left = count;
  const ended = new Promise<void>((resolve) => {
    const onEnded = () => {
      if (--left > 0) return;
      handlers.off('ended', onEnded);
      resolve();
    };
    handlers.on('ended', onEnded);
  });
  return within(ended, 5000, () => `${left} more handler(s) to end`);
}

@Controller('metered')
class MeteredController {
  @Ws('echo')
  async echo(@Socket() socket: WebSocketContext) {
    for await (const message of socket) {
      await socket.send(
        message.type === 'text' ? `echo:${message.text}` : message,
      );
    }
    handlers.emit('ended');
  }

  @Ws('rooms/:room')
  async room(@Socket() socket: WebSocketContext, @Param('room') room: string) {
    const message = await socket.receive();
    await socket.send(`${room}:${message.text}`);
    await socket.close(4001, 'Done');
    handlers.emit('ended');
  }

  @Ws('stream', { sendHighWaterMark: HIGH_WATER_MARK })
  async stream(@Socket() socket: WebSocketContext) {
    const chunk = Buffer.alloc(64 * 1024);
    // the client, in this process, reads nothing until the handler awaits something that is not
    // already settled: these sends fill the socket's buffers
    while (socket.bufferedAmount <= HIGH_WATER_MARK) await socket.send(chunk);
    await socket.send('last'); // waits for the client to read
    await socket.close();
    handlers.emit('ended');
  }
}

/** The messages a closed client received: how many, and their bytes. */
async function drained(
  client: WsTestClient,
): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for (;;) {
    try {
      const message = await client.next();
      count++;
      bytes += message.data.length;
    } catch {
      // closed, and nothing left in its queue
      return { count, bytes };
    }
  }
}

/** A route's counts one way, as the instruments report them. */
function traffic(
  collected: Collected,
  route: Record<string, string>,
  direction: 'receive' | 'transmit',
) {
  const attributes = { ...route, 'network.io.direction': direction };
  return {
    messages: collected.value('websocket.server.messages', attributes),
    bytes: collected.value('websocket.server.io', attributes),
  };
}

/** The sessions ended, by route and close code, in the order of the codes. */
function closes(collected: Collected) {
  return collected
    .points('websocket.server.session.closed')
    .map(({ attributes, value }) => ({
      route: attributes['http.route'],
      code: attributes['websocket.close.code'],
      value,
    }))
    .sort((a, b) => Number(a.code) - Number(b.code));
}

describe.each(platforms)('metrics, on %s', (platform) => {
  let provider: GlobalMeterProvider;
  let app: INestApplication;
  let wsMetrics: WsMetrics;

  beforeEach(async () => {
    // as an app does: the SDK is registered before the Nest app is created
    provider = new GlobalMeterProvider();
    ({ app } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot({})],
        controllers: [MeteredController],
      },
      undefined,
      platform,
    ));
    wsMetrics = app.get(WsMetrics);
  });

  afterEach(async () => {
    await app.close();
    await provider.close();
  });

  it('counts open sessions, messages and bytes each way per route, and closes by code', async () => {
    const roomEnded = handlersEnd(1);
    const first = await connectWs(app, '/metered/echo');
    const second = await connectWs(app, '/metered/echo');
    const room = await connectWs(app, '/metered/rooms/general');
    first.send('hello');
    expect((await first.next()).text).toBe('echo:hello');
    first.send(Buffer.from([1, 2, 3]));
    expect((await first.next()).data).toEqual(Buffer.from([1, 2, 3]));
    second.send('é'); // 2 bytes of UTF-8
    expect((await second.next()).text).toBe('echo:é');
    room.send('hi');
    expect((await room.next()).text).toBe('general:hi');
    expect(await room.closed).toEqual({ code: 4001, reason: 'Done' });
    await roomEnded;

    let collected = await provider.collect(METER);
    const active = (route: Attributes) =>
      collected.value('websocket.server.session.active', route);
    expect([active(ECHO), active(ROOM), active(STREAM)]).toEqual([2, 0, 0]);
    expect(collected.value('websocket.server.session.opened', ECHO)).toBe(2);
    expect(collected.value('websocket.server.session.opened', ROOM)).toBe(1);
    // 'hello' (5), [1, 2, 3] (3), 'é' (2) in; 'echo:hello' (10), [1, 2, 3], 'echo:é' (7) out
    expect(traffic(collected, ECHO, 'receive')).toEqual({
      messages: 3,
      bytes: 10,
    });
    expect(traffic(collected, ECHO, 'transmit')).toEqual({
      messages: 3,
      bytes: 20,
    });
    expect(traffic(collected, ROOM, 'receive')).toEqual({
      messages: 1,
      bytes: 2,
    });
    expect(traffic(collected, ROOM, 'transmit')).toEqual({
      messages: 1,
      bytes: 10,
    });
    expect(closes(collected)).toEqual([
      { route: '/metered/rooms/:room', code: 4001, value: 1 },
    ]);
    expect(wsMetrics.snapshot()).toMatchObject({
      sessions: {
        open: 2,
        total: 3,
        byEndpoint: {
          '/metered/echo': { open: 2, total: 2 },
          '/metered/rooms/:room': { open: 0, total: 1 },
          '/metered/stream': { open: 0, total: 0 },
        },
      },
      messagesIn: 4,
      messagesOut: 4,
      bytesIn: 12,
      bytesOut: 30,
      closes: { '4001': 1 },
      backpressure: 0,
    });

    const echoesEnded = handlersEnd(2);
    expect(await first.close()).toEqual({ code: 1000, reason: '' });
    expect(await second.close(4000, 'Bye')).toEqual({
      code: 4000,
      reason: 'Bye',
    });
    await echoesEnded;

    collected = await provider.collect(METER);
    expect([active(ECHO), active(ROOM)]).toEqual([0, 0]);
    expect(closes(collected)).toEqual([
      { route: '/metered/echo', code: 1000, value: 1 },
      { route: '/metered/echo', code: 4000, value: 1 },
      { route: '/metered/rooms/:room', code: 4001, value: 1 },
    ]);
    const snapshot = wsMetrics.snapshot();
    expect(snapshot.sessions).toMatchObject({ open: 0, total: 3 });
    expect(snapshot.closes).toEqual({ '1000': 1, '4000': 1, '4001': 1 });
  });

  it('counts a connection that drops without a close frame as closed with 1006', async () => {
    const ended = handlersEnd(1);
    const client = await connectWs(app, '/metered/echo');
    client.ws.terminate();
    await ended;
    const collected = await provider.collect(METER);
    expect(collected.value('websocket.server.session.active', ECHO)).toBe(0);
    expect(closes(collected)).toEqual([
      { route: '/metered/echo', code: 1006, value: 1 },
    ]);
    expect(wsMetrics.snapshot().closes).toEqual({ '1006': 1 });
  });

  it('counts a send that waits for the peer to read as backpressure, and every byte sent', async () => {
    const ended = handlersEnd(1);
    const client = await connectWs(app, '/metered/stream');
    expect(await client.closed).toEqual({ code: 1000, reason: '' });
    await ended;
    const received = await drained(client);
    const collected = await provider.collect(METER);
    expect(collected.value('websocket.server.backpressure', STREAM)).toBe(1);
    expect(traffic(collected, STREAM, 'transmit')).toEqual({
      messages: received.count,
      bytes: received.bytes,
    });
    expect(received.bytes).toBe((received.count - 1) * 64 * 1024 + 4);
    expect(wsMetrics.snapshot()).toMatchObject({
      backpressure: 1,
      messagesOut: received.count,
      bytesOut: received.bytes,
    });
  });
});
