// b. the groups benchmark's server (bench/groups.ts): /member joins the group GROUP, and each
// message a member sends makes one broadcast to the group with the injected `Broadcaster`;
// /session joins nothing until the harness's 'join' (the memory run). Its queries:
// bench/servers/group-probe.ts.
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  Broadcaster,
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from '../../src/lib';
import { GROUP, groupQueries, timedBroadcast } from './group-probe';
import { serve } from './serve';

/** The sessions of /session, in the order they came. */
const sessions = new Set<WebSocketContext>();

@Controller()
class GroupsBenchController {
  constructor(private readonly broadcaster: Broadcaster) {}

  @Ws('member')
  async member(@Socket() socket: WebSocketContext) {
    await socket.join(GROUP);
    for await (const message of socket) {
      void message;
      await timedBroadcast((payload) =>
        this.broadcaster.to(GROUP).send(payload),
      );
    }
  }

  @Ws('session')
  async session(@Socket() socket: WebSocketContext) {
    sessions.add(socket);
    try {
      for await (const message of socket) void message;
    } finally {
      sessions.delete(socket);
    }
  }
}

@Module({
  imports: [WsEndpointsModule.forRoot({ maxPayload: 1024 * 1024 })],
  controllers: [GroupsBenchController],
})
class GroupsBenchModule {}

async function main() {
  const app = await NestFactory.create(GroupsBenchModule, {
    logger: ['error', 'warn'],
  });
  await app.listen(0, '127.0.0.1');
  const broadcaster = app.get(Broadcaster);
  serve(
    (app.getHttpServer().address() as { port: number }).port,
    groupQueries({
      members: () => broadcaster.to(GROUP).count,
      sessions: () => sessions.size,
      join: async (names) => {
        let index = 0;
        let memberships = 0;
        for (const socket of sessions) {
          if (socket.groups.size === 0) {
            for (const name of names(index)) {
              await socket.join(name);
              memberships++;
            }
          }
          index++;
        }
        return memberships;
      },
    }),
  );
}
void main();
