// r. the reliable-mode benchmark's server (bench/reliable.ts): the same echo on a plain @Ws
// endpoint and on a reliable one, in one process, so that their CPU per message compares what
// the envelope adds; and the reliable endpoints that the resume and memory runs hold sessions on.
// Its own queries: 'sessions' (the reliable sessions by state), 'burst' (the /replay handlers
// send while their clients are away).
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Socket, WebSocketContext, Ws, WsEndpointsModule } from '../../src/lib';
import { serve } from './serve';

/** What /replay sends while its client is away: 33 bytes, the echo's message. */
const TEXT = 'hello, world: the quick brown fox';
/** What /held sends on connect and the client does not ack: 10 messages of 100 bytes. */
const HELD = { count: 10, text: 'x'.repeat(100) };

/** The reliable sessions whose handlers run (one Set entry each: a few bytes of the memory run). */
const sessions = new Set<WebSocketContext>();
/** The harness's word to a /replay handler: send `count` messages, then say so. */
interface Burst {
  count: number;
  sent(): void;
}
const waitingForBurst: Array<(burst: Burst) => void> = [];

/** Runs `handler` with `socket` counted in `sessions`. */
async function tracked(
  socket: WebSocketContext,
  handler: () => Promise<void>,
): Promise<void> {
  sessions.add(socket);
  try {
    await handler();
  } finally {
    sessions.delete(socket);
  }
}

/** Waits for the session's end: its messages, if any, are dropped. */
async function untilEnd(socket: WebSocketContext): Promise<void> {
  for await (const message of socket) void message;
}

@Controller()
class ReliableBenchController {
  @Ws('text')
  async text(@Socket() socket: WebSocketContext) {
    for await (const message of socket) await socket.send(message);
  }

  @Ws('reliable', { reliable: true })
  reliable(@Socket() socket: WebSocketContext) {
    return tracked(socket, async () => {
      for await (const message of socket) await socket.send(message);
    });
  }

  /** Sends nothing until the harness says 'burst', which comes once the client is away. */
  @Ws('replay', { reliable: true })
  replay(@Socket() socket: WebSocketContext) {
    return tracked(socket, async () => {
      const burst = await new Promise<Burst>((resolve) =>
        waitingForBurst.push(resolve),
      );
      for (let i = 0; i < burst.count; i++) await socket.send(TEXT);
      burst.sent();
      await untilEnd(socket);
    });
  }

  @Ws('held', { reliable: true })
  held(@Socket() socket: WebSocketContext) {
    return tracked(socket, async () => {
      for (let i = 0; i < HELD.count; i++) await socket.send(HELD.text);
      await untilEnd(socket);
    });
  }
}

@Module({
  imports: [WsEndpointsModule.forRoot({ maxPayload: 1024 * 1024 })],
  controllers: [ReliableBenchController],
})
class ReliableBenchModule {}

async function main() {
  const app = await NestFactory.create(ReliableBenchModule, {
    logger: ['error', 'warn'],
  });
  await app.listen(0, '127.0.0.1');
  serve((app.getHttpServer().address() as { port: number }).port, {
    sessions: () => {
      const states: Record<string, number> = {};
      for (const socket of sessions)
        states[socket.state] = (states[socket.state] ?? 0) + 1;
      return states;
    },
    burst: async (query) => {
      const handlers = waitingForBurst.splice(0);
      await Promise.all(
        handlers.map(
          (resolve) =>
            new Promise<void>((sent) =>
              resolve({ count: Number(query.count), sent }),
            ),
        ),
      );
      return { handlers: handlers.length };
    },
  });
}
void main();
