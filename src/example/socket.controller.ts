import { Controller } from '@nestjs/common';
import { Socket, WebSocketContext, Ws } from 'nestjs-ws-endpoints';

/**
 * The seed's echo: `ws://host/socket/handle` answers each text message with
 * `Your message: … at <time>`, and each binary message with the same bytes, as binary.
 */
@Controller('socket')
export class SocketController {
  @Ws('handle')
  async handle(@Socket() socket: WebSocketContext): Promise<void> {
    for await (const message of socket) {
      if (message.type === 'binary') {
        await socket.send(message); // a received message is sent as it came: its bytes, as binary
      } else {
        await socket.send(
          `Your message: ${message.text} at ${new Date().toISOString()}`,
        );
      }
    }
  }
}
