// The README's "When the connection drops" table, row by row: what survives an instance's graceful
// restart and its crash (instances are processes of their own, test/fixtures/instance.ts), and a
// Redis outage (a private redis-server this suite starts and stops). A dropped connection is
// test/reliable.e2e-spec.ts and test/reliable-resume.e2e-spec.ts.
import { Controller } from '@nestjs/common';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import {
  RedisIdempotencyStore,
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import {
  connect,
  RequestError,
  type Welcome,
  type WsClient,
} from 'nestjs-ws-endpoints/client';
import { FaultProxy } from './utils/fault-proxy';
import { Instance } from './utils/instance';
import { PrivateRedis } from './utils/redis';
import { startApp, TestApp } from './utils/test-app';
import { until } from './utils/until';
import { within } from './utils/within';

const options = {
  WebSocket: WebSocket as never,
  reconnect: { initialDelay: 20, maxDelay: 100 },
};

/** Collects what a client receives and the welcomes it gets, from the moment it is made. */
function observe(client: WsClient) {
  const got: string[] = [];
  const welcomes: Welcome[] = [];
  client.on('message', (message) => got.push(message.text));
  client.on('session', (welcome) => welcomes.push(welcome));
  return { got, welcomes };
}

describe('when an instance restarts or crashes', () => {
  const instances: Instance[] = [];
  const clients: WsClient[] = [];
  let proxy: FaultProxy | undefined;
  let prefix: string;

  beforeEach(() => {
    prefix = `test:${randomUUID()}:`;
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await proxy?.close();
    proxy = undefined;
    await Promise.all(instances.splice(0).map((i) => i.stop('SIGKILL')));
  });

  async function instance(port = 0): Promise<Instance> {
    const started = await Instance.start(port, prefix);
    instances.push(started);
    return started;
  }

  function client(url: string): WsClient {
    const made = connect(url, options);
    clients.push(made);
    return made;
  }

  it.each(['SIGTERM', 'SIGKILL'] as const)(
    'after %s the client gets a new session and is told so; what it queued meanwhile arrives once, a request answered before is answered from the shared store',
    async (signal) => {
      const first = await instance();
      proxy = await FaultProxy.start({ port: first.port });
      const peer = client(proxy.url('/work'));
      const { got, welcomes } = observe(peer);
      peer.send('a');
      await until(
        () => got.length === 1 && peer.queued === 0,
        'the first echo, and its ack',
      );
      // a request the first instance answers, whose reply is lost with it
      const reply = peer.request('hold order-7', { timeout: 20_000 });
      await until(
        () => first.processed().includes('hold order-7'),
        'the request is processed',
      );
      proxy.stall();
      first.send('release');
      await until(
        () =>
          first.events.some(
            (e) => 'replied' in e && e.replied === 'hold order-7',
          ),
        'the reply is made',
      );
      await first.stop(signal);
      proxy.cutAll(); // the reply, held in the proxy, is lost
      proxy.resume();
      await until(
        () => peer.state === 'reconnecting',
        'the client sees the drop',
      );
      peer.send('b'); // sent while no instance runs: queued
      const second = await instance(first.port);
      expect((await within(reply, 10_000, 'the retried request')).text).toBe(
        `${first.pid} did hold order-7`,
      );
      await until(() => got.length === 2, 'the queued message is echoed');
      expect(got).toEqual([`${first.pid} got a`, `${second.pid} got b`]);
      expect(welcomes.map((w) => w.resumed)).toEqual([false, false]);
      expect(welcomes[0].session).not.toBe(welcomes[1].session);
      expect(second.events).toContainEqual(
        expect.objectContaining({ resumeFailed: true }),
      );
      // processed once: by the first instance only
      expect(first.processed()).toEqual(['hold order-7']);
      expect(second.processed()).toEqual([]);
    },
    30_000,
  );
});

describe('when an instance crashes while it processes a request', () => {
  const instances: Instance[] = [];
  let peer: WsClient | undefined;

  afterEach(async () => {
    peer?.close();
    await Promise.all(instances.splice(0).map((i) => i.stop('SIGKILL')));
  });

  it('its claim lapses within the lease, and the retry is processed by the next instance', async () => {
    const prefix = `test:${randomUUID()}:`;
    const first = await Instance.start(0, prefix);
    instances.push(first);
    peer = connect(`ws://127.0.0.1:${first.port}/work`, options);
    const reply = peer.request('hold crash-1', { timeout: 30_000 });
    await until(
      () => first.processed().includes('hold crash-1'),
      'the request is processed',
    );
    await first.stop('SIGKILL'); // it never answers, and never releases its claim
    const second = await Instance.start(first.port, prefix);
    instances.push(second);
    // the retry waits for the claim to lapse (CLAIM_LEASE, 10 s), then takes it over
    await until(
      () => second.processed().includes('hold crash-1'),
      'the retry is processed',
      15_000,
    );
    second.send('release');
    expect((await reply).text).toBe(`${second.pid} did hold crash-1`);
  }, 30_000);
});

describe('when an instance crashes before it acks', () => {
  const instances: Instance[] = [];
  let peer: WsClient | undefined;

  afterEach(async () => {
    peer?.close();
    await Promise.all(instances.splice(0).map((i) => i.stop('SIGKILL')));
  });

  it('the client sends its unacked message again to the new session: at least once', async () => {
    const prefix = `test:${randomUUID()}:`;
    const first = await Instance.start(0, prefix);
    instances.push(first);
    peer = connect(`ws://127.0.0.1:${first.port}/work`, options);
    const { got } = observe(peer);
    peer.send('z');
    await until(() => got.length === 1, 'the echo');
    // within the second after which the ack would go
    expect(peer.queued).toBe(1);
    await first.stop('SIGKILL');
    const second = await Instance.start(first.port, prefix);
    instances.push(second);
    await until(() => got.length === 2, 'the echo from the new instance');
    expect(got).toEqual([`${first.pid} got z`, `${second.pid} got z`]);
  });
});

describe('when an instance restarts', () => {
  const instances: Instance[] = [];
  let peer: WsClient | undefined;

  afterEach(async () => {
    peer?.close();
    await Promise.all(instances.splice(0).map((i) => i.stop('SIGKILL')));
  });

  it('acks what it got before it says goodbye, so the client does not send it again', async () => {
    const prefix = `test:${randomUUID()}:`;
    const first = await Instance.start(0, prefix);
    instances.push(first);
    peer = connect(`ws://127.0.0.1:${first.port}/work`, options);
    const { got } = observe(peer);
    peer.send('x');
    await until(() => got.length === 1, 'the echo');
    // well within the 100 ms after which the ack would go anyway
    await first.stop('SIGTERM');
    const second = await Instance.start(first.port, prefix);
    instances.push(second);
    peer.send('y');
    await until(() => got.length === 2, 'the echo from the new instance');
    expect(got).toEqual([`${first.pid} got x`, `${second.pid} got y`]);
  });
});

/** How often each request was processed. */
const processed: string[] = [];

@Controller()
class OutageController {
  @Ws('work', { reliable: true, heartbeat: false })
  async work(@Socket() socket: WebSocketContext) {
    for await (const message of socket) {
      if (!message.id) {
        await socket.send(`got ${message.text}`);
        continue;
      }
      processed.push(message.text);
      await socket.reply(message, `did ${message.text}`);
    }
  }
}

describe('when Redis is away', () => {
  let redis: PrivateRedis;
  let store: Redis;
  let t: TestApp;
  const clients: WsClient[] = [];

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    store = new Redis(redis.url, {
      maxRetriesPerRequest: 0,
      retryStrategy: () => 50,
    });
    store.on('error', () => undefined);
    t = await startApp({
      imports: [
        WsEndpointsModule.forRoot({
          idempotencyStore: new RedisIdempotencyStore(store),
        }),
      ],
      controllers: [OutageController],
    });
  });

  afterAll(async () => {
    for (const client of clients.splice(0)) client.close();
    await t.app.close();
    store.disconnect();
    await redis.down();
  });

  it('messages go on, a request gets 503 and is processed by no one; once Redis is back requests work', async () => {
    const peer = connect(
      (await t.app.getUrl()).replace('http', 'ws') + '/work',
      options,
    );
    clients.push(peer);
    const { got } = observe(peer);
    expect((await peer.request('one')).text).toBe('did one');
    await redis.down();
    peer.send('during');
    await until(
      () => got.includes('got during'),
      'a message during the outage',
    );
    const refused = await peer.request('two').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(RequestError);
    expect((refused as RequestError).status).toBe(503);
    await redis.up();
    await until(() => store.status === 'ready', 'the store reconnects', 10_000);
    expect((await peer.request('three')).text).toBe('did three');
    expect(processed).toEqual(['one', 'three']);
    expect(t.logs.find('error', 'idempotency store failed')).toHaveLength(1);
  });
});
