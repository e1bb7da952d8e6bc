import { Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';

async function bootstrap() {
  const app = await NestFactory.create(AppModule);
  // SIGTERM / SIGINT close every WebSocket session with 1001 before the process exits
  app.enableShutdownHooks();
  await app.listen(app.get(ConfigService).get<string>('PORT') ?? 3000);
  new Logger('Example').log(`Example page on ${await app.getUrl()}`);
}
void bootstrap();
