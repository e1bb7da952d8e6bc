// d. a Nest @WebSocketGateway on WsAdapter with @SubscribeMessage, with and without ValidationPipe.
import { Module, UsePipes } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { WsAdapter } from '@nestjs/platform-ws';
import {
  MessageBody,
  SubscribeMessage,
  WebSocketGateway,
} from '@nestjs/websockets';
import { EchoDto, echoValidationPipe } from './echo.dto';
import { routesControllers } from './nest-routes';
import { serve } from './serve';

@WebSocketGateway({ path: '/gateway' })
class EchoGateway {
  @SubscribeMessage('echo')
  echo(@MessageBody() data: unknown) {
    return { event: 'echo', data };
  }

  @SubscribeMessage('dto')
  @UsePipes(echoValidationPipe())
  dto(@MessageBody() data: EchoDto) {
    return { event: 'dto', data };
  }
}

// with --routes=100, the app's 100 `@Get` routes: WsAdapter takes the upgrade before the HTTP
// app sees it, so they should cost its handshakes nothing
@Module({ controllers: routesControllers(), providers: [EchoGateway] })
class BenchModule {}

async function main() {
  const app = await NestFactory.create(BenchModule, {
    logger: ['error', 'warn'],
  });
  app.useWebSocketAdapter(new WsAdapter(app));
  await app.listen(0, '127.0.0.1');
  serve((app.getHttpServer().address() as { port: number }).port);
}
void main();
