import { Controller, INestApplication } from '@nestjs/common';
import { once } from 'node:events';
import {
  Socket,
  WebSocketContext,
  WebSocketDisconnect,
  Ws,
  WsEndpointsModule,
} from 'nestjs-ws-endpoints';
import { connectWs } from 'nestjs-ws-endpoints/testing';
import { Deferred } from './utils/deferred';
import { startApp } from './utils/test-app';

/** What the handlers saw, for the tests to assert on. */
const seen = {
  gate: new Deferred(),
  afterClose: new Deferred<{
    error: unknown;
    state: string;
    code?: number;
    reason?: string;
    aborted: boolean;
  }>(),
  iteration: new Deferred<{
    received: string[];
    code?: number;
    reason?: string;
  }>(),
  sendAfterClose: new Deferred<unknown>(),
};

@Controller('ctx')
class ContextController {
  @Ws('kinds')
  async kinds(@Socket() socket: WebSocketContext) {
    await socket.send('text');
    await socket.send(Buffer.from([1, 2, 3]));
    await socket.send(new Uint8Array([4, 5]));
    await socket.send(new Uint16Array([0x0706]).buffer);
    await socket.send({ json: true });
    await socket.send([1, 'two']);
    for await (const message of socket) {
      await socket.send({
        type: message.type,
        text: message.text,
        bytes: [...message.data],
      });
      await socket.send(message); // as it came
    }
  }

  @Ws('late')
  async late(@Socket() socket: WebSocketContext) {
    await seen.gate.promise; // a database call, say, before the first receive()
    const texts: string[] = [];
    for (let i = 0; i < 3; i++) texts.push((await socket.receive()).text);
    await socket.send(texts);
  }

  @Ws('after-close')
  async afterClose(@Socket() socket: WebSocketContext) {
    await socket.receive();
    await socket.closed;
    const error = await socket.receive().catch((e: unknown) => e);
    seen.afterClose.resolve({
      error,
      state: socket.state,
      code: socket.closeCode,
      reason: socket.closeReason,
      aborted: socket.signal.aborted,
    });
  }

  @Ws('iterate')
  async iterate(@Socket() socket: WebSocketContext) {
    const received: string[] = [];
    for await (const message of socket) received.push(message.text);
    seen.iteration.resolve({
      received,
      code: socket.closeCode,
      reason: socket.closeReason,
    });
  }

  @Ws('send-after-close')
  async sendAfterClose(@Socket() socket: WebSocketContext) {
    await socket.closed;
    seen.sendAfterClose.resolve(
      await socket.send('late').catch((e: unknown) => e),
    );
  }

  @Ws('close')
  async close(@Socket() socket: WebSocketContext) {
    const errors: string[] = [];
    for (const [code, reason] of [
      [1005, ''],
      [999, ''],
      [5000, ''],
      [1000, 'x'.repeat(124)],
    ] as const) {
      try {
        // thrown at the call, as ws does, so that a close that is not awaited cannot go unhandled
        void socket.close(code, reason);
      } catch (e) {
        errors.push(`${(e as Error).name}: ${(e as Error).message}`);
      }
    }
    await socket.send({ errors, state: socket.state });
    await socket.close(4321, 'Done here');
    await socket.send('never').catch(() => undefined);
  }

  @Ws('receive-options')
  async receiveOptions(@Socket() socket: WebSocketContext) {
    const timedOut = await socket
      .receive({ timeout: 10 })
      .catch((e: Error) => e.name);
    const controller = new AbortController();
    controller.abort(new Error('stop waiting'));
    const aborted = await socket
      .receive({ signal: controller.signal })
      .catch((e: Error) => e.message);
    await socket.send({ timedOut, aborted });
    await socket.send({ next: (await socket.receive({ timeout: 5000 })).text });
  }

  @Ws('identity')
  async identity(@Socket() socket: WebSocketContext) {
    socket.data.joined = 'now';
    await socket.send({
      id: socket.id,
      header: socket.headers['x-client'],
      protocol: socket.protocol,
      query: socket.query,
      data: socket.data,
    });
  }
}

describe('WebSocketContext', () => {
  let app: INestApplication;

  beforeAll(async () => {
    ({ app } = await startApp({
      imports: [WsEndpointsModule.forRoot({})],
      controllers: [ContextController],
    }));
  });

  afterAll(() => app.close());

  it('sends strings as text, Buffer/TypedArray/ArrayBuffer as binary, a received message as it came and anything else as JSON', async () => {
    const client = await connectWs(app, '/ctx/kinds');
    const frames = [];
    for (let i = 0; i < 6; i++) frames.push(await client.next());
    expect(
      frames.map((f) => [f.isBinary, f.isBinary ? [...f.data] : f.text]),
    ).toEqual([
      [false, 'text'],
      [true, [1, 2, 3]],
      [true, [4, 5]],
      [true, [6, 7]],
      [false, '{"json":true}'],
      [false, '[1,"two"]'],
    ]);
    client.send('héllo');
    expect(await client.nextJson()).toEqual({
      type: 'text',
      text: 'héllo',
      bytes: [...Buffer.from('héllo')],
    });
    const echoedText = await client.next();
    expect([echoedText.isBinary, echoedText.text]).toEqual([false, 'héllo']);
    client.send(Buffer.from([0, 255]));
    expect(await client.nextJson()).toEqual({
      type: 'binary',
      text: Buffer.from([0, 255]).toString(),
      bytes: [0, 255],
    });
    const echoedBinary = await client.next();
    expect([echoedBinary.isBinary, [...echoedBinary.data]]).toEqual([
      true,
      [0, 255],
    ]);
    await client.close();
  });

  it('queues frames from the upgrade on: a handler busy before its first receive() loses nothing', async () => {
    const client = await connectWs(app, '/ctx/late');
    for (const text of ['one', 'two', 'three']) client.send(text);
    client.ws.ping();
    await once(client.ws, 'pong'); // the server has read everything sent before the ping
    seen.gate.resolve();
    expect(await client.nextJson()).toEqual(['one', 'two', 'three']);
  });

  it('rejects receive() after the close with WebSocketDisconnect carrying the code and reason', async () => {
    const client = await connectWs(app, '/ctx/after-close');
    client.send('first');
    await client.close(4001, 'Leaving');
    const result = await seen.afterClose.promise;
    expect(result.error).toBeInstanceOf(WebSocketDisconnect);
    expect(result.error).toMatchObject({ code: 4001, reason: 'Leaving' });
    expect(result).toMatchObject({
      state: 'closed',
      code: 4001,
      reason: 'Leaving',
      aborted: true,
    });
  });

  it('ends async iteration quietly when the peer closes, after every queued message', async () => {
    const client = await connectWs(app, '/ctx/iterate');
    client.send('a');
    client.send('b');
    await client.close(1000, 'Bye');
    expect(await seen.iteration.promise).toEqual({
      received: ['a', 'b'],
      code: 1000,
      reason: 'Bye',
    });
  });

  it('rejects send() on a closed socket with a message that says so', async () => {
    const client = await connectWs(app, '/ctx/send-after-close');
    await client.close(1001);
    const error = await seen.sendAfterClose.promise;
    expect(error).toBeInstanceOf(WebSocketDisconnect);
    expect((error as Error).message).toBe(
      'Cannot send: the socket is closed (1001 Going Away).',
    );
  });

  it('close() refuses reserved or invalid codes and long reasons with a RangeError before sending, then closes', async () => {
    const client = await connectWs(app, '/ctx/close');
    const { errors, state } = await client.nextJson();
    expect(state).toBe('open');
    expect(errors).toEqual([
      expect.stringMatching(/^RangeError: Invalid close code 1005/),
      expect.stringMatching(/^RangeError: Invalid close code 999/),
      expect.stringMatching(/^RangeError: Invalid close code 5000/),
      'RangeError: The close reason is 124 bytes long; a close reason may be at most 123 bytes of UTF-8.',
    ]);
    expect(await client.closed).toEqual({ code: 4321, reason: 'Done here' });
  });

  it('receive() honours a timeout and an abort signal, then still receives', async () => {
    const client = await connectWs(app, '/ctx/receive-options');
    expect(await client.nextJson()).toEqual({
      timedOut: 'TimeoutError',
      aborted: 'stop waiting',
    });
    client.send('after');
    expect(await client.nextJson()).toEqual({ next: 'after' });
  });

  it('exposes id, headers, protocol, query and a per-connection data bag', async () => {
    const first = await connectWs(app, '/ctx/identity?a=1', {
      headers: { 'x-client': 'jest' },
    });
    const second = await connectWs(app, '/ctx/identity');
    const [one, two] = [await first.nextJson(), await second.nextJson()];
    expect(one).toEqual({
      id: expect.any(String),
      header: 'jest',
      protocol: '',
      query: { a: '1' },
      data: { joined: 'now' },
    });
    expect(one.id).not.toBe(two.id);
  });
});
