import {
  Controller,
  Param,
  UseGuards,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import { Broadcaster, Socket, WebSocketContext, Ws } from 'nestjs-ws-endpoints';
import { ChatMessageDto } from './chat-message.dto';
import { ChatTokenGuard, type ChatUser } from './chat-token.guard';
import { RoomNamePipe } from './room-name.pipe';

/**
 * The subprotocol of the chat: a client that offers it (with `bearer.<token>` beside it) gets it
 * back selected, which a browser requires of a server when it offers any.
 */
export const CHAT_PROTOCOL = 'chat';

/** A message of the room, as each member gets it. */
export interface ChatMessage {
  room: string;
  /** The sender's user id. */
  from: string;
  text: string;
  /** When the server got it (ISO 8601). */
  at: string;
}

/**
 * `ws://host/chat/:room`: a chat room in reliable mode, for `nestjs-ws-endpoints/client`. Each
 * message `{"text"}` goes to every member of the room, on every instance (with `REDIS_URL`),
 * as a {@link ChatMessage}; an invalid one gets an error frame. The room's presence comes as
 * `join(group, { watch: true })` sends it: `{"type":"state","members"}` first, then
 * `{"type":"diff","joins","leaves"}`.
 */
@Controller('chat')
export class ChatController {
  constructor(private readonly broadcaster: Broadcaster) {}

  @Ws(':room', { reliable: true, protocols: [CHAT_PROTOCOL] })
  // runs on the upgrade request: 401 before any socket exists
  @UseGuards(ChatTokenGuard)
  // what socket.messages(ChatMessageDto) runs each message through
  @UsePipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true }))
  async room(
    @Socket() socket: WebSocketContext<ChatUser>,
    @Param('room', RoomNamePipe) room: string,
  ): Promise<void> {
    const group = `chat:${room}`;
    // listed in the room's presence, and sent its members, then each join and leave
    await socket.join(group, {
      meta: { since: new Date().toISOString() },
      watch: true,
    });
    for await (const { text } of socket.messages(ChatMessageDto)) {
      const message: ChatMessage = {
        room,
        from: socket.user.id,
        text,
        at: new Date().toISOString(),
      };
      // false only when the broker was away for longer than the backplane holds a message
      if (!(await this.broadcaster.to(group).send(message))) {
        await socket.send({
          error: { status: 503, message: 'Not delivered: try again.' },
        });
      }
    }
  }
}
