import {
  ArgumentsHost,
  CanActivate,
  Catch,
  Controller,
  ExceptionFilter,
  ExecutionContext,
  INestApplication,
  Injectable,
  LoggerService,
  UseFilters,
  UseGuards,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import { WsException } from '@nestjs/websockets';
import { IsString } from 'class-validator';
import { Test } from '@nestjs/testing';
import {
  Socket,
  WebSocketContext,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs, expectRejected } from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { encodeFrame, Opcode } from './utils/frames';
import { RawConnection, upgradeRequest } from './utils/raw-http';
import { CapturedLogs, startApp } from './utils/test-app';
import { within } from './utils/within';

/** Per test: what a handler reports. */
let reported: Deferred<unknown>;

/** Makes `request.user` a getter that throws: the session cannot be made after the handshake. */
@Injectable()
class PoisonedUserGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    Object.defineProperty(context.switchToHttp().getRequest(), 'user', {
      get() {
        throw new Error('no user for you');
      },
    });
    return true;
  }
}

@Catch()
class NeverSettlingFilter implements ExceptionFilter {
  catch(_error: unknown, _host: ArgumentsHost) {
    return new Promise(() => undefined);
  }
}

@Injectable()
class NeverGuard implements CanActivate {
  canActivate(): Promise<boolean> {
    return new Promise(() => undefined);
  }
}

@Controller('misuse')
class MisuseController {
  @Ws('poisoned-user')
  @UseGuards(PoisonedUserGuard)
  async poisonedUser(@Socket() socket: WebSocketContext) {
    reported.resolve('the handler ran');
    await socket.closed;
  }

  @Ws('hung-filter', { closeTimeout: 300 })
  @UseFilters(NeverSettlingFilter)
  async hungFilter() {
    throw new Error('to a filter that never settles');
  }

  @Ws('odd-calls')
  async oddCalls(@Socket() socket: WebSocketContext) {
    const outcomes: string[] = [];
    const options = {
      get fin(): boolean {
        throw new Error('fin of no value');
      },
    };
    const describe = (action: () => Promise<unknown>) =>
      action().then(
        () => 'resolved',
        (error: Error) => `rejected: ${error.message}`,
      );
    try {
      outcomes.push(await describe(() => socket.send('x', options)));
    } catch (error) {
      outcomes.push(`threw: ${(error as Error).message}`);
    }
    try {
      void socket.close(1000, null as unknown as string);
    } catch (error) {
      outcomes.push(`${(error as Error).name}: ${(error as Error).message}`);
    }
    outcomes.push(
      await describe(() =>
        socket.receive({ signal: {} as unknown as AbortSignal }),
      ),
    );
    await socket.send({ outcomes });
    // the message that follows is for the next receive(), not for the refused one
    await socket.send(`next: ${(await socket.receive()).text}`);
  }

  @Ws('never-guard')
  @UseGuards(NeverGuard)
  neverGuard() {}

  @Ws('throws')
  async throws() {
    throw new Error('boom');
  }

  @Ws('ws-exception')
  async wsException() {
    throw new WsException('nope');
  }

  @Ws('validated')
  @UsePipes(new ValidationPipe())
  async validated(@Socket() socket: WebSocketContext) {
    for await (const note of socket.messages(NoteDto)) await socket.send(note);
  }
}

class NoteDto {
  @IsString() text!: string;
}

describe('user code that misuses the API or leaves things hanging', () => {
  let app: INestApplication;
  let logs: CapturedLogs;

  beforeAll(async () => {
    ({ app, logs } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [MisuseController],
    }));
  });

  beforeEach(() => (reported = new Deferred()));
  afterAll(() => app.close());

  it('closes with 1011, logged once, a connection whose session cannot be made after the 101', async () => {
    const errorsBefore = logs.count('error');
    const client = await connectWs(app, '/misuse/poisoned-user');
    expect(await client.closed).toEqual({
      code: 1011,
      reason: 'Internal server error',
    });
    expect(logs.find('error', 'no user for you')).toHaveLength(1);
    expect(logs.count('error')).toBe(errorsBefore + 1);
  });

  it('leaves no socket behind when that connection then breaks the protocol', async () => {
    const connection = await RawConnection.open(app);
    await connection.write(upgradeRequest('/misuse/poisoned-user'));
    expect((await connection.nextResponse()).status).toBe(101);
    await connection.write(
      encodeFrame({ opcode: Opcode.Text, payload: 'x', masked: false }),
    );
    await connection.whenEnded(5000);
    connection.destroy();
  });

  it('closes with the default code after closeTimeout when an exception filter never settles', async () => {
    const client = await connectWs(app, '/misuse/hung-filter');
    expect(await within(client.closed, 5000, 'never closed')).toEqual({
      code: 1011,
      reason: 'Internal server error',
    });
    expect(
      logs.find('warn', 'did not settle within closeTimeout'),
    ).toHaveLength(1);
    await app.get(WebSocketSessions).settled();
  });

  it('rejects rather than throws on send() options whose getter throws, throws a TypeError at close() with a reason that is not text, and refuses a signal that is not an AbortSignal without losing the next message', async () => {
    const client = await connectWs(app, '/misuse/odd-calls');
    expect(await client.nextJson()).toEqual({
      outcomes: [
        'rejected: fin of no value',
        'TypeError: The close reason must be a string, got object.',
        expect.stringMatching(
          /^rejected: receive\(\): options\.signal must be an AbortSignal/,
        ),
      ],
    });
    client.send('hello');
    expect((await client.next()).text).toBe('next: hello');
    await client.closed;
  });
});

describe('a logger that throws', () => {
  class ThrowingLogger implements LoggerService {
    log() {}
    error() {
      throw new Error('the error logger is down');
    }
    warn() {
      throw new Error('the warn logger is down');
    }
    debug() {
      throw new Error('the debug logger is down');
    }
  }

  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [WsEndpointsModule.forRoot({ handshakeTimeout: 200 })],
      controllers: [MisuseController],
    }).compile();
    app = moduleRef.createNestApplication({ logger: new ThrowingLogger() });
    await app.listen(0, '127.0.0.1');
  });

  afterAll(() => app.close());

  it('does not keep a handshake timeout from answering 503', async () => {
    const { body } = await expectRejected(app, '/misuse/never-guard', 503);
    expect(body).toMatchObject({ message: 'Handshake timed out' });
    // and the app still serves
    await expectRejected(app, '/misuse/never-guard', 503);
  });

  it.each([
    ['/misuse/throws', { code: 1011, reason: 'Internal server error' }],
    ['/misuse/ws-exception', { code: 1008, reason: 'nope' }],
  ])('does not change the close code of %s', async (path, close) => {
    const client = await connectWs(app, path);
    expect(await client.closed).toEqual(close);
  });

  it('does not change the error frame of an invalid message, nor close the socket', async () => {
    const client = await connectWs(app, '/misuse/validated');
    client.send({ text: 42 });
    expect(await client.nextJson()).toMatchObject({ error: { status: 400 } });
    client.send({ text: 'fine' });
    expect(await client.nextJson()).toEqual({ text: 'fine' });
    await client.close();
  });

  it('does not change the 403 of a refused origin', async () => {
    await expectRejected(app, '/misuse/throws', 403, {
      origin: 'http://evil.example',
    });
  });
});
