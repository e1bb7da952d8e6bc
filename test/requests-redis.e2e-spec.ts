import { Controller } from '@nestjs/common';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import WebSocket from 'ws';
import {
  RedisIdempotencyStore,
  Socket,
  WebSocketContext,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { Deferred } from './utils/deferred';
import { describeWithRedis, REDIS_URL } from './utils/redis';
import { startApp, TestApp } from './utils/test-app';
import { until } from './utils/until';
import { within } from './utils/within';

/** Which instance processed each request, in order. */
const processed: Array<{ instance: string; text: string }> = [];
/** Requests whose handler waits for the test before it replies. */
const held = new Map<string, Deferred>();
/** The session that processed each request. */
const contexts = new Map<string, WebSocketContext>();

function workController(instance: string) {
  @Controller()
  class WorkController {
    @Ws('work', { requests: true, heartbeat: false })
    async work(@Socket() socket: WebSocketContext) {
      for await (const message of socket) {
        if (!message.id) continue;
        processed.push({ instance, text: message.text });
        contexts.set(message.text, socket);
        await held.get(message.text)?.promise;
        // a refund is given up when its client has gone
        if (message.text.startsWith('refund') && socket.state === 'closed')
          return;
        await socket
          .reply(message, `${instance} did ${message.text}`)
          .catch(() => undefined);
      }
    }
  }
  return WorkController;
}

/** A raw client that speaks the envelope: every frame it gets, from the moment it is made. */
class EnvelopeSocket {
  readonly frames: string[] = [];
  readonly ws: WebSocket;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data: Buffer) => this.frames.push(data.toString()));
    this.ws.on('error', () => undefined);
  }

  async request(id: string, text: string): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) await once(this.ws, 'open');
    this.ws.send(`q 0 ${id}\n${text}`);
  }

  /** The reply frame to request `id`, once it came. */
  reply(id: string): Promise<string> {
    const find = () =>
      this.frames.find((frame) => frame.startsWith(`r 0 ${id}\n`));
    return until(() => find() !== undefined, `the reply to ${id}`).then(
      () => find()!.split('\n')[1],
    );
  }
}

describeWithRedis(
  'requests processed once across instances sharing a RedisIdempotencyStore',
  () => {
    const redis: Redis[] = [];
    const apps: TestApp[] = [];
    const sockets: EnvelopeSocket[] = [];
    let urls: string[];
    let prefix: string;

    beforeAll(async () => {
      // each run has keys of its own: runs on one Redis do not see each other's requests
      prefix = `test:${randomUUID()}:`;
      for (const instance of ['A', 'B']) {
        const client = new Redis(REDIS_URL, {
          lazyConnect: true,
          maxRetriesPerRequest: 1,
        });
        await client.connect().catch((error: Error) => {
          throw new Error(
            `These tests need Redis at ${REDIS_URL} (${error.message}): start one with \`redis-server --port 6379 --daemonize yes\`, or set REDIS_URL.`,
          );
        });
        redis.push(client);
        apps.push(
          await startApp({
            imports: [
              WsEndpointsModule.forRoot({
                idempotencyStore: new RedisIdempotencyStore(client, { prefix }),
              }),
            ],
            controllers: [workController(instance)],
          }),
        );
      }
      urls = await Promise.all(
        apps.map(
          async ({ app }) =>
            (await app.getUrl()).replace('http', 'ws') + '/work',
        ),
      );
    });

    beforeEach(() => {
      processed.length = 0;
      held.clear();
    });

    afterEach(() => {
      for (const socket of sockets.splice(0)) socket.ws.terminate();
    });

    afterAll(async () => {
      for (const { app } of apps) await app.close();
      for (const client of redis) client.disconnect();
    });

    function socket(instance: 0 | 1): EnvelopeSocket {
      const made = new EnvelopeSocket(urls[instance]);
      sockets.push(made);
      return made;
    }

    it('a retry on another instance while the first still works waits for its reply, processed once', async () => {
      const gate = new Deferred();
      held.set('pay 10', gate);
      const first = socket(0);
      await first.request('r1', 'pay 10');
      await until(() => processed.length === 1, 'A processes the request');
      const retry = socket(1);
      await retry.request('r1', 'pay 10');
      gate.resolve();
      expect(
        await within(retry.reply('r1'), 5000, 'the retry is answered'),
      ).toBe('A did pay 10');
      expect(await first.reply('r1')).toBe('A did pay 10');
      expect(processed).toEqual([{ instance: 'A', text: 'pay 10' }]);
    });

    it('a claim held longer than its lease is extended: a retry meanwhile still waits, processed once', async () => {
      const gate = new Deferred();
      held.set('long 1', gate);
      const first = socket(0);
      await first.request('r6', 'long 1');
      await until(() => processed.length === 1, 'A starts on the request');
      const retry = socket(1);
      await retry.request('r6', 'long 1');
      // A extends its claim while it works: its time to live goes up again, so B cannot take it over
      const [key] = await redis[0].keys(`${prefix}*r6`);
      const claimed = await redis[0].pttl(key);
      let ttl = claimed;
      await until(
        () => {
          void redis[0].pttl(key).then((now) => (ttl = now));
          return ttl > claimed;
        },
        'the claim is extended',
        8000,
      );
      expect(processed).toEqual([{ instance: 'A', text: 'long 1' }]);
      gate.resolve();
      expect(
        await within(retry.reply('r6'), 5000, 'the retry is answered'),
      ).toBe('A did long 1');
      expect(processed).toEqual([{ instance: 'A', text: 'long 1' }]);
    });

    it('a reply made after the connection is gone is kept for the retry', async () => {
      const gate = new Deferred();
      held.set('ship 3', gate);
      const first = socket(0);
      await first.request('r2', 'ship 3');
      await until(() => processed.length === 1, 'A processes the request');
      first.ws.terminate();
      await until(
        () => contexts.get('ship 3')?.state === 'closed',
        'A sees the connection gone',
      );
      gate.resolve();
      const retry = socket(1);
      await retry.request('r2', 'ship 3');
      expect(await retry.reply('r2')).toBe('A did ship 3');
      expect(processed).toEqual([{ instance: 'A', text: 'ship 3' }]);
    });

    it('a request whose session ended unanswered is processed by the retry', async () => {
      const first = socket(0);
      const dropped = new Deferred();
      held.set('refund 5', dropped);
      await first.request('r5', 'refund 5');
      await until(() => processed.length === 1, 'A starts on the request');
      const retry = socket(1);
      await retry.request('r5', 'refund 5');
      // A's handler gives up without a reply: its claim is released, and B's retry takes it
      contexts.get('refund 5')!.terminate();
      await until(
        () => contexts.get('refund 5')?.state === 'closed',
        'A sees the connection gone',
      );
      held.delete('refund 5');
      dropped.resolve();
      expect(
        await within(retry.reply('r5'), 5000, 'the retry is answered'),
      ).toBe('B did refund 5');
      expect(processed.map(({ instance }) => instance)).toEqual(['A', 'B']);
    });

    it('ids are per user: the same id from a request already answered is a duplicate, a new id is not', async () => {
      const one = socket(1);
      await one.request('r3', 'ping');
      expect(await one.reply('r3')).toBe('B did ping');
      await one.request('r3', 'ping');
      await one.request('r4', 'ping');
      expect(await one.reply('r4')).toBe('B did ping');
      await until(
        () => one.frames.filter((f) => f.startsWith('r 0 r3\n')).length === 2,
        'the duplicate is answered',
      );
      expect(processed).toHaveLength(2);
    });
  },
);
