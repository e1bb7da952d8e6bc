// b. and c. our @Ws endpoints: a receive/send loop, and messages(Dto) through ValidationPipe; on
// Nest's Express app, or with `--fastify` on its Fastify app (b2.). With `--routes=100`, the app
// also has 100 plain `@Get` routes, on a controller that Nest registers before ours. On Express,
// which tries routes in the order they were added, our module then moves its routes in front of
// the app's (`routeFirst` in src/lib/upgrade/platform-handler.ts, so that a `@Get(':id')` cannot
// answer an upgrade): an upgrade walks the middleware, then finds ours first, and never tries
// the 100 routes. Their cost shows in reference g. registered after them (g2.), not here. On
// Fastify, the order does not matter: its router is a radix tree.
import {
  CanActivate,
  Controller,
  ExecutionContext,
  Module,
  UseGuards,
  UsePipes,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EchoDto, echoValidationPipe } from './echo.dto';
import type { IncomingMessage } from 'node:http';
import { Socket, WebSocketContext, Ws, WsEndpointsModule } from '../../src/lib';
import { routesControllers } from './nest-routes';
import { AUTH_HEADER, serve } from './serve';

class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext) {
    return (
      context.switchToHttp().getRequest<IncomingMessage>().headers
        .authorization === AUTH_HEADER
    );
  }
}

@Controller()
class EchoController {
  @Ws('text')
  async text(@Socket() socket: WebSocketContext) {
    for await (const message of socket) await socket.send(message);
  }

  @Ws('json')
  async json(@Socket() socket: WebSocketContext) {
    for await (const message of socket) await socket.send(message.json());
  }

  @Ws('dto')
  @UsePipes(echoValidationPipe())
  async dto(@Socket() socket: WebSocketContext) {
    for await (const message of socket.messages(EchoDto))
      await socket.send(message);
  }

  @Ws('guarded')
  @UseGuards(TokenGuard)
  async guarded(@Socket() socket: WebSocketContext) {
    for await (const message of socket) await socket.send(message);
  }
}

@Module({
  imports: [WsEndpointsModule.forRoot({ maxPayload: 1024 * 1024 })],
  controllers: [...routesControllers(), EchoController],
})
class BenchModule {}

async function main() {
  const options = { logger: ['error', 'warn'] as ('error' | 'warn')[] };
  // loaded only for b2., so that b.'s process holds no Fastify
  const app = process.argv.includes('--fastify')
    ? await NestFactory.create(
        BenchModule,
        new (await import('@nestjs/platform-fastify')).FastifyAdapter(),
        options,
      )
    : await NestFactory.create(BenchModule, options);
  await app.listen(0, '127.0.0.1');
  serve((app.getHttpServer().address() as { port: number }).port);
}
void main();
