import { Controller } from '@nestjs/common';
import { Socket, WebSocketContext, Ws } from 'nestjs-ws-endpoints';

/**
 * The seed's echo: `ws://host/socket/handle` answers each text message with
 * `Your message: … at <time>`, and each binary message with the same bytes, as binary.
 * `ws://host/socket/reliable` is the same echo in reliable mode, for `nestjs-ws-endpoints/client`
 * (the page uses it): a dropped connection loses nothing, and a request gets its echo as reply.
 */
@Controller('socket')
export class SocketController {
  @Ws('handle')
  async handle(@Socket() socket: WebSocketContext): Promise<void> {
    for await (const message of socket) {
      const echo =
        message.type === 'binary'
          ? message // a received message is sent as it came: its bytes, as binary
          : `Your message: ${message.text} at ${new Date().toISOString()}`;
      if (message.id) await socket.reply(message, echo);
      else await socket.send(echo);
    }
  }

  @Ws('reliable', { reliable: true })
  reliable(@Socket() socket: WebSocketContext): Promise<void> {
    return this.handle(socket);
  }
}
