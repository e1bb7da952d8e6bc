import { Controller, INestApplication } from '@nestjs/common';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import {
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import {
  connectWs,
  expectRejected,
  WsTestClient,
} from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { startApp } from './utils/test-app';

const events: string[] = [];
let stubbornStarted = new Deferred();
let stubbornSocket: WebSocketContext | undefined;

@Controller('shutdown')
class ShutdownController {
  @Ws('clean')
  async clean(@Socket() socket: WebSocketContext) {
    await socket.send('ready');
    for await (const message of socket) await socket.send(message.text);
    events.push(`clean handler done, signal aborted: ${socket.signal.aborted}`);
  }

  @Ws('stubborn')
  async stubborn(@Socket() socket: WebSocketContext) {
    stubbornSocket = socket;
    await socket.send('ready');
    stubbornStarted.resolve();
    await new Promise(() => undefined); // ignores the signal: never settles
  }
}

async function openApp(shutdownTimeout?: number) {
  const { app } = await startApp({
    imports: [WsEndpointsModule.forRoot({ shutdownTimeout })],
    controllers: [ShutdownController],
  });
  return app;
}

async function ready(
  app: INestApplication,
  path: string,
): Promise<WsTestClient> {
  const client = await connectWs(app, path);
  expect((await client.next()).text).toBe('ready');
  return client;
}

describe('graceful shutdown on app.close()', () => {
  beforeEach(() => {
    events.length = 0;
    stubbornStarted = new Deferred();
  });

  it('closes a session with 1001, aborts its signal and waits for its handler', async () => {
    const app = await openApp();
    const client = await ready(app, '/shutdown/clean');
    await app.close();
    events.push('app closed');
    expect(await client.closed).toEqual({
      code: 1001,
      reason: 'Server shutting down',
    });
    expect(events).toEqual([
      'clean handler done, signal aborted: true',
      'app closed',
    ]);
  });

  it('answers new upgrades with 503 while draining, and drops a handler that ignores its signal after shutdownTimeout', async () => {
    const app = await openApp(300);
    const stubborn = await ready(app, '/shutdown/stubborn');
    const closing = app.close();
    expect(await stubborn.closed).toEqual({
      code: 1001,
      reason: 'Server shutting down',
    });
    const { body } = await expectRejected(app, '/shutdown/clean', 503);
    expect(body).toEqual({
      statusCode: 503,
      error: 'Service Unavailable',
      message: 'Server shutting down',
    });
    await closing;
  });

  it('drops, after shutdownTimeout, a connection whose peer does not answer the 1001', async () => {
    const app = await openApp(300);
    const stubborn = await ready(app, '/shutdown/stubborn');
    stubborn.ws.pause(); // reads nothing more: the close frame is never answered
    await app.close(); // closeTimeout is 5 s: only the drain's terminate ends it sooner
    // the server never got the peer's close frame: it dropped the connection
    expect(stubbornSocket?.state).toBe('closed');
    expect(stubbornSocket?.closeCode).toBe(1006);
    stubborn.ws.resume();
    await stubborn.closed;
  });

  it('closes 500 open sessions with 1001', async () => {
    const app = await openApp();
    const clients = await Promise.all(
      Array.from({ length: 500 }, () => ready(app, '/shutdown/clean')),
    );
    await app.close();
    const closes = await Promise.all(clients.map((client) => client.closed));
    expect(closes.every(({ code }) => code === 1001)).toBe(true);
    expect(events).toHaveLength(500);
  });
});

describe('graceful shutdown on SIGTERM (enableShutdownHooks)', () => {
  it("closes the example app's sessions with 1001 before the process exits", async () => {
    const root = join(__dirname, '..');
    const child = spawn(
      process.execPath,
      [
        '-r',
        'ts-node/register/transpile-only',
        '-r',
        'tsconfig-paths/register',
        'src/main.ts',
      ],
      {
        cwd: root,
        env: { ...process.env, PORT: '0', NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const exited = once(child, 'exit');
    let output = '';
    const url = await new Promise<string>((resolve) =>
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const found = /Example page on http:\/\/\[::1\]:(\d+)/.exec(output);
        if (found) resolve(`ws://127.0.0.1:${found[1]}`);
      }),
    );
    const client = await connectWs(url, '/socket/handle');
    client.send('before');
    expect((await client.next()).text).toMatch(/^Your message: before at /);
    child.kill('SIGTERM');
    expect(await client.closed).toEqual({
      code: 1001,
      reason: 'Server shutting down',
    });
    const [code, signal] = await exited;
    expect(code === 0 || signal === 'SIGTERM').toBe(true);
  }, 30_000);
});
