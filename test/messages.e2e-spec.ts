import {
  ArgumentMetadata,
  Controller,
  INestApplication,
  Injectable,
  PipeTransform,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import { APP_PIPE } from '@nestjs/core';
import { IsInt, IsNotEmpty, IsOptional, IsString, Min } from 'class-validator';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs } from 'nestjs-ws-endpoints/testing';
import { platforms, startApp } from './utils/test-app';

class ChatMessageDto {
  @IsString()
  @IsNotEmpty()
  text!: string;

  @IsOptional()
  @IsInt()
  @Min(1)
  priority?: number;
}

class JoinDto {
  @IsString()
  room!: string;
}

/** Marks what it transforms, to prove controller pipes run on each message. */
@Injectable()
class StampPipe implements PipeTransform {
  transform(value: unknown, metadata: ArgumentMetadata) {
    return metadata.type === 'body'
      ? { ...(value as object), stamped: metadata.metatype?.name }
      : value;
  }
}

const strict = new ValidationPipe({
  whitelist: true,
  forbidNonWhitelisted: true,
  transform: true,
});

@Controller('chat')
class ChatController {
  @Ws()
  @UsePipes(strict)
  async chat(@Socket() socket: WebSocketContext) {
    const join = await socket.receive(JoinDto);
    await socket.send({ joined: join.room });
    for await (const message of socket.messages(ChatMessageDto)) {
      await socket.send({
        text: message.text,
        priority: message.priority ?? null,
        isDto: message instanceof ChatMessageDto,
      });
    }
  }

  @Ws('strict', { validation: 'close' })
  @UsePipes(strict)
  async closing(@Socket() socket: WebSocketContext) {
    for await (const message of socket.messages(ChatMessageDto))
      await socket.send(message.text);
  }

  @Ws('global')
  async global(@Socket() socket: WebSocketContext) {
    for await (const message of socket.messages(ChatMessageDto))
      await socket.send(message);
  }
}

@Controller('stamped')
@UsePipes(StampPipe)
class StampedController {
  @Ws()
  async stamped(@Socket() socket: WebSocketContext) {
    await socket.send(await socket.receive(JoinDto));
  }
}

describe.each(platforms)(
  'per-message pipes: receive(Dto) and messages(Dto), on %s',
  (platform) => {
    let app: INestApplication;

    beforeAll(async () => {
      ({ app } = await startApp(
        {
          imports: [WsEndpointsModule.forRoot({})],
          controllers: [ChatController, StampedController],
        },
        (app) => app.useGlobalPipes(new ValidationPipe()),
        platform,
      ));
    });

    afterAll(() => app.close());

    async function joinedChat() {
      const client = await connectWs(app, '/chat');
      client.send({ room: 'general' });
      expect(await client.nextJson()).toEqual({ joined: 'general' });
      return client;
    }

    it('hands the handler a validated, transformed DTO', async () => {
      const client = await joinedChat();
      client.send({ text: 'hello', priority: 2 });
      expect(await client.nextJson()).toEqual({
        text: 'hello',
        priority: 2,
        isDto: true,
      });
    });

    it.each([
      ['invalid JSON', '{"text": "unterminated', 'Invalid JSON'],
      [
        'a missing field',
        { priority: 1 },
        expect.arrayContaining([
          'text should not be empty',
          'text must be a string',
        ]),
      ],
      [
        'a wrong type',
        { text: 'hi', priority: 'high' },
        expect.arrayContaining(['priority must be an integer number']),
      ],
      [
        'an extra field',
        { text: 'hi', admin: true },
        ['property admin should not exist'],
      ],
      ['JSON null', 'null', expect.anything()],
      ['a JSON number', '42', expect.anything()],
      ['a JSON array', '[{"text":"hi"}]', expect.anything()],
      ['a binary frame of garbage', Buffer.from([0xff, 0x00]), 'Invalid JSON'],
    ])(
      'answers %s with an error frame and skips the message',
      async (_case, payload, message) => {
        const client = await joinedChat();
        client.send(payload);
        expect(await client.nextJson()).toEqual({
          error: { status: 400, message },
        });
        client.send({ text: 'still here' });
        expect(await client.nextJson()).toEqual({
          text: 'still here',
          priority: null,
          isDto: true,
        });
      },
    );

    it("closes with 1007 on an invalid message under the 'close' policy", async () => {
      const client = await connectWs(app, '/chat/strict');
      client.send({ text: 'ok' });
      expect((await client.next()).text).toBe('ok');
      client.send({ text: 42 });
      expect(await client.closed).toEqual({
        code: 1007,
        reason: 'Invalid message',
      });
    });

    it('runs global pipes (useGlobalPipes) on each message', async () => {
      const client = await connectWs(app, '/chat/global');
      client.send({});
      expect(await client.nextJson()).toMatchObject({ error: { status: 400 } });
      client.send({ text: 'extra is allowed here', other: 1 });
      expect(await client.nextJson()).toEqual({
        text: 'extra is allowed here',
        other: 1,
      });
    });

    it('runs controller pipes with { type: "body", metatype: Dto }', async () => {
      const client = await connectWs(app, '/stamped');
      client.send({ room: 'a' });
      expect(await client.nextJson()).toEqual({
        room: 'a',
        stamped: 'JoinDto',
      });
    });
  },
);

describe('per-message pipes registered with APP_PIPE', () => {
  it('runs an APP_PIPE on each message', async () => {
    const { app } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [ChatController],
      providers: [{ provide: APP_PIPE, useValue: new ValidationPipe() }],
    });
    const client = await connectWs(app, '/chat/global');
    client.send({ priority: 0 });
    expect(await client.nextJson()).toMatchObject({ error: { status: 400 } });
    await app.close();
  });
});
