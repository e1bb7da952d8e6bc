// b. and c. our @Ws endpoints: a receive/send loop, and messages(Dto) through ValidationPipe.
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
  controllers: [EchoController],
})
class BenchModule {}

async function main() {
  const app = await NestFactory.create(BenchModule, {
    logger: ['error', 'warn'],
  });
  await app.listen(0, '127.0.0.1');
  serve((app.getHttpServer().address() as { port: number }).port);
}
void main();
