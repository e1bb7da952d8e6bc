import { Controller, INestApplication } from '@nestjs/common';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as work } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  Socket,
  WebSocketContext,
  WebSocketDisconnect,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, wsUrl } from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { startApp } from './utils/test-app';

const MESSAGES = 20_000;
const MESSAGE_SIZE = 16 * 1024;
const MiB = 1024 * 1024;

/** What the server process holds: the JS heap and the buffers outside it. */
function serverMemory(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

const seen = {
  flood: new Deferred<{ peakGrowth: number }>(),
  stream: new Deferred<{
    sentBytes: number;
    error: unknown;
    reason: unknown;
  }>(),
};

@Controller('flow')
class FlowController {
  // no heartbeat: the peer's pong waits behind all it sends, and on a loaded machine the run can
  // outlast an interval and a timeout (such a peer is dropped as a silent one, by design)
  @Ws('slow', { maxPayload: MESSAGE_SIZE, heartbeat: false })
  async slow(@Socket() socket: WebSocketContext) {
    const baseline = serverMemory();
    let peakGrowth = 0;
    let next = 0;
    let ordered = true;
    for await (const message of socket) {
      ordered &&= message.data.readUInt32BE(0) === next;
      next++;
      await work(1); // the handler's own work: 1 ms a message
      if (next % 1000 === 0)
        peakGrowth = Math.max(peakGrowth, serverMemory() - baseline);
      if (next === MESSAGES) break;
    }
    seen.flood.resolve({ peakGrowth });
    await socket.send({ received: next, ordered });
  }

  @Ws('stream', { sendTimeout: 300, sendHighWaterMark: 256 * 1024 })
  async stream(@Socket() socket: WebSocketContext) {
    const chunk = Buffer.alloc(64 * 1024);
    let sentBytes = 0;
    try {
      for (;;) {
        await socket.send(chunk);
        sentBytes += chunk.length;
      }
    } catch (error) {
      seen.stream.resolve({ sentBytes, error, reason: socket.signal.reason });
    }
  }
}

describe('flow control', () => {
  let app: INestApplication;

  beforeAll(async () => {
    ({ app } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [FlowController],
    }));
  });

  afterAll(() => app.close());

  it(`stops reading a peer that floods ${MESSAGES} messages at a slow handler: all arrive, in order, in bounded memory`, async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      join(__dirname, 'utils/flood-client.js'),
      wsUrl(app, '/flow/slow'),
      String(MESSAGES),
      String(MESSAGE_SIZE),
    ]);
    expect(JSON.parse(stdout)).toEqual({ received: MESSAGES, ordered: true });
    // unbounded, the queue alone would hold 20,000 × 16 KiB = 312 MiB
    const { peakGrowth } = await seen.flood.promise;
    expect(peakGrowth).toBeLessThan(48 * MiB);
  }, 120_000);

  it('makes send() wait for a peer that stops reading, then closes it with 1013 after sendTimeout', async () => {
    const client = await connectWs(app, '/flow/stream');
    client.ws.pause(); // reads nothing more: the TCP window fills
    const { sentBytes, error, reason } = await seen.stream.promise;
    expect(error).toBeInstanceOf(WebSocketDisconnect);
    expect(reason).toMatchObject({ code: 1013, reason: 'Slow consumer' });
    // what the kernel buffers took, plus at most the high-water mark: not an endless buffer
    expect(sentBytes).toBeLessThan(32 * MiB);
    client.ws.resume();
    expect(await client.closed).toEqual({
      code: 1013,
      reason: 'Slow consumer',
    });
  });
});
