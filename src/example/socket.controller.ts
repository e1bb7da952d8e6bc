import { Controller } from '@nestjs/common';
import { Socket, WebSocketContext, Ws } from 'nestjs-ws-endpoints';

/** The seed's echo: `ws://host/socket/handle` answers each message with `Your message: … at <time>`. */
@Controller('socket')
export class SocketController {
  @Ws('handle')
  async handle(@Socket() socket: WebSocketContext): Promise<void> {
    for await (const message of socket) {
      await socket.send(
        `Your message: ${message.text} at ${new Date().toISOString()}`,
      );
    }
  }
}
