import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { WsEndpointsModule } from 'nestjs-ws-endpoints';
import { ChatController } from './example/chat/chat.controller';
import { DashboardController } from './example/dashboard.controller';
import { PageController } from './example/page.controller';
import { SocketController } from './example/socket.controller';
import { wsSettings } from './example/ws-settings';

@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true }),
    WsEndpointsModule.forRootAsync({
      inject: [ConfigService],
      useFactory: wsSettings,
    }),
  ],
  controllers: [
    PageController,
    SocketController,
    ChatController,
    DashboardController,
  ],
})
export class AppModule {}
