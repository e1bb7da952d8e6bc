import { Module } from '@nestjs/common';
import { WsEndpointsModule } from 'nestjs-ws-endpoints';
import { PageController } from './example/page.controller';
import { SocketController } from './example/socket.controller';

@Module({
  imports: [WsEndpointsModule.forRoot({})],
  controllers: [PageController, SocketController],
})
export class AppModule {}
