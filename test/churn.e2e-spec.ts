import { Controller, INestApplication } from '@nestjs/common';
import type { Server } from 'node:http';
import type { Socket as NetSocket } from 'node:net';
import {
  Socket,
  WebSocketContext,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, WsTestClient } from 'nestjs-ws-endpoints/testing';
import { encodeFrame, Opcode } from './utils/frames';
import { startApp } from './utils/test-app';

const CONNECTIONS = 2_000;
const AT_ONCE = 50;
const ECHOERS = 10;

@Controller()
class EchoController {
  @Ws('echo')
  async echo(@Socket() socket: WebSocketContext) {
    for await (const message of socket) await socket.send(message.text);
  }
}

function heapUsed(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed;
}

/** How many of each kind of handle keep the process busy (sockets, timers…). */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo())
    counts[kind] = (counts[kind] ?? 0) + 1;
  return counts;
}

function listeners(server: Server) {
  return ['upgrade', 'request', 'connection', 'close', 'error'].map((event) =>
    server.listenerCount(event),
  );
}

/** One connection that echoes once, then goes away: cleanly, or by destroying TCP mid-message. */
async function churnOne(app: INestApplication, abrupt: boolean): Promise<void> {
  const client = await connectWs(app, '/echo');
  client.send('hello');
  await client.next();
  if (!abrupt) {
    await client.close();
    return;
  }
  const socket = (client.ws as unknown as { _socket: NetSocket })._socket;
  const frame = encodeFrame({ opcode: Opcode.Text, payload: 'x'.repeat(1000) });
  socket.write(frame.subarray(0, frame.length / 2));
  socket.destroy();
  await client.closed;
}

async function churn(app: INestApplication, count: number): Promise<void> {
  for (let done = 0; done < count; done += AT_ONCE) {
    await Promise.all(
      Array.from({ length: AT_ONCE }, (_, i) =>
        churnOne(app, (done + i) % 2 === 1),
      ),
    );
  }
}

/** Echoes in a loop until `stop` resolves; returns how many round trips it made. */
async function echoUntil(
  client: WsTestClient,
  stopped: () => boolean,
): Promise<number> {
  let roundTrips = 0;
  while (!stopped()) {
    client.send(`ping ${roundTrips}`);
    expect((await client.next()).text).toBe(`ping ${roundTrips}`);
    roundTrips++;
  }
  await client.close();
  return roundTrips;
}

describe('churn soak', () => {
  let app: INestApplication;

  beforeAll(async () => {
    ({ app } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [EchoController],
    }));
  });

  afterAll(() => app.close());

  it(`survives ${CONNECTIONS} connections dropped cleanly and abruptly while others echo, leaking nothing`, async () => {
    const sessions = app.get(WebSocketSessions);
    const server = app.getHttpServer() as Server;
    await churn(app, 200); // warm-up: code paths compiled, pools filled
    await sessions.settled();
    const before = {
      heap: heapUsed(),
      resources: resources(),
      listeners: listeners(server),
    };

    let churning = true;
    const echoers = await Promise.all(
      Array.from({ length: ECHOERS }, () => connectWs(app, '/echo')),
    );
    const roundTrips = Promise.all(
      echoers.map((client) => echoUntil(client, () => !churning)),
    );
    await churn(app, CONNECTIONS);
    churning = false;
    expect(Math.min(...(await roundTrips))).toBeGreaterThan(0);

    await sessions.settled();
    expect(sessions.size).toBe(0);
    // a per-connection leak would show by the thousand; a timer of the last close may still run
    const { Timeout: timers = 0, ...handles } = resources();
    const { Timeout: timersBefore = 0, ...handlesBefore } = before.resources;
    expect(handles).toEqual(handlesBefore);
    expect(timers).toBeLessThanOrEqual(timersBefore + 2);
    expect(listeners(server)).toEqual(before.listeners);
    expect(heapUsed()).toBeLessThan(before.heap * 1.1);
  }, 120_000);
});
