// One instance of the three-instance benchmark (bench/cluster.ts): a Nest app on a RedisBackplane.
// `/room?meta=0|1` joins the group `bench` (with meta 1, listed in its presence); a text message
// from a client is broadcast to the group as it came. Queries: 'presence' (the group's count).
import { Controller, Module, Query } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import {
  Broadcaster,
  Presence,
  RedisBackplane,
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from '../../src/lib';
import { serve } from './serve';

const [prefix] = process.argv.slice(2);

@Controller()
class ClusterBenchController {
  constructor(private readonly broadcaster: Broadcaster) {}

  @Ws('room', { heartbeat: false })
  async room(@Socket() socket: WebSocketContext, @Query('meta') meta: string) {
    await socket.join(
      'bench',
      meta === '1' ? { meta: { name: `user-${socket.id.slice(0, 8)}` } } : {},
    );
    await socket.send('joined');
    for await (const message of socket) {
      void this.broadcaster.to('bench').send(message);
    }
  }
}

async function main() {
  @Module({
    imports: [
      WsEndpointsModule.forRoot({
        backplane: new RedisBackplane(
          new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
            lazyConnect: true,
          }),
          { prefix },
        ),
      }),
    ],
    controllers: [ClusterBenchController],
  })
  class ClusterBenchModule {}
  const app = await NestFactory.create(ClusterBenchModule, {
    logger: ['error'],
  });
  await app.listen(0, '127.0.0.1');
  const presence = app.get(Presence);
  serve(app.getHttpServer().address().port, {
    presence: async () => ({ count: await presence.count('bench') }),
  });
}

void main();
