import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { WebSocketDisconnect } from '../errors/ws-disconnect.exception';
import { ContextSettings, WebSocketContext } from './websocket-context';
import type { WebSocketMessage } from './websocket-message';

/** A real ws server and client on loopback; the server side wrapped in a WebSocketContext. */
async function pair(
  settings: Partial<ContextSettings> & { closeTimeout?: number } = {},
) {
  const { closeTimeout = 5000, ...contextSettings } = settings;
  // @types/ws does not know closeTimeout (ws ≥ 8.19) yet
  const server = new WebSocketServer({
    port: 0,
    host: '127.0.0.1',
    ...({ closeTimeout } as object),
  });
  await once(server, 'listening');
  const client = new WebSocket(
    `ws://127.0.0.1:${(server.address() as AddressInfo).port}/path?x=1`,
  );
  const [ws, request] = await once(server, 'connection');
  await once(client, 'open');
  const context = new WebSocketContext(ws, request, {
    parse: async (message) => message.json(),
    onRejectedMessage: async () => undefined,
    inboundQueue: 64,
    inboundQueueBytes: 1024 * 1024,
    sendHighWaterMark: 1024 * 1024,
    sendTimeout: 10_000,
    userId: () => undefined,
    // these tests join no group
    groups: {
      join: () => Promise.reject(new Error('no groups')),
      leave: () => undefined,
    },
    ...contextSettings,
  });
  return { server, client, context };
}

describe('WebSocketContext state machine', () => {
  let server: WebSocketServer;
  afterEach(() => new Promise((resolve) => server.close(resolve)));

  it('goes open → closing → closed when the server closes, and completes the handshake', async () => {
    const { server: s, client, context } = await pair();
    server = s;
    expect(context.state).toBe('open');
    const closing = context.close(4000, 'Done');
    expect(context.state).toBe('closing');
    expect(context.closeCode).toBeUndefined();
    const [[code, reason]] = await Promise.all([
      once(client, 'close'),
      closing,
    ]);
    expect([code, reason.toString()]).toEqual([4000, 'Done']);
    expect(context.state).toBe('closed');
    expect(context.closeCode).toBe(4000);
    expect(context.closeReason).toBe('Done');
    expect(context.signal.aborted).toBe(true);
  });

  it("reports the peer's code and reason when the peer closes", async () => {
    const { server: s, client, context } = await pair();
    server = s;
    client.close(1001, 'Tab closed');
    await context.closed;
    expect([context.state, context.closeCode, context.closeReason]).toEqual([
      'closed',
      1001,
      'Tab closed',
    ]);
  });

  it('reports 1006 when the connection drops without a close frame', async () => {
    const { server: s, client, context } = await pair();
    server = s;
    client.terminate();
    await context.closed;
    expect(context.closeCode).toBe(1006);
    await expect(context.receive()).rejects.toEqual(
      expect.objectContaining({ code: 1006 }),
    );
  });

  it('terminates a peer that does not answer the close frame within closeTimeout', async () => {
    const { server: s, client, context } = await pair({ closeTimeout: 50 });
    server = s;
    client.on('error', () => undefined);
    client.pause(); // stops reading: the close frame is never answered
    await context.close(1000);
    expect(context.closeCode).toBe(1006);
    client.terminate();
  });

  it('delivers queued messages before reporting the close', async () => {
    const { server: s, client, context } = await pair();
    server = s;
    client.send('one');
    client.send('two');
    client.close();
    await context.closed;
    expect((await context.receive()).text).toBe('one');
    expect((await context.receive()).text).toBe('two');
    await expect(context.receive()).rejects.toBeInstanceOf(WebSocketDisconnect);
  });

  it('serves concurrent receive() calls in order', async () => {
    const { server: s, client, context } = await pair();
    server = s;
    const first = context.receive();
    const second = context.receive();
    client.send('a');
    client.send('b');
    expect([(await first).text, (await second).text]).toEqual(['a', 'b']);
    client.close();
  });

  it('serves pending iterator reads and receive() calls in the order they were made, and ends them all at the close', async () => {
    const { server: s, client, context } = await pair();
    server = s;
    const loop = context[Symbol.asyncIterator]();
    const otherLoop = context[Symbol.asyncIterator]();
    const reads = [
      loop.next(),
      context.receive(),
      otherLoop.next(),
      context.receive(),
    ];
    for (const text of ['a', 'b', 'c', 'd']) client.send(text);
    const [first, second, third, fourth] = await Promise.all(reads);
    expect([
      (first as IteratorResult<WebSocketMessage>).value.text,
      (second as WebSocketMessage).text,
      (third as IteratorResult<WebSocketMessage>).value.text,
      (fourth as WebSocketMessage).text,
    ]).toEqual(['a', 'b', 'c', 'd']);

    const pending = [loop.next(), context.receive(), otherLoop.next()];
    client.close(1000);
    const [ended, failed, otherEnded] = await Promise.allSettled(pending);
    expect(ended).toEqual({
      status: 'fulfilled',
      value: { value: undefined, done: true },
    });
    expect(failed).toEqual(
      expect.objectContaining({
        status: 'rejected',
        reason: expect.any(WebSocketDisconnect),
      }),
    );
    expect(otherEnded).toEqual(ended);
  });

  it('skips a message the parser rejects, after handing the error to onRejectedMessage', async () => {
    const rejected: unknown[] = [];
    const {
      server: s,
      client,
      context,
    } = await pair({
      onRejectedMessage: async (_context, error) => void rejected.push(error),
    });
    server = s;
    class Dto {}
    client.send('not json');
    client.send('{"ok":true}');
    expect(await context.receive(Dto)).toEqual({ ok: true });
    expect(rejected).toEqual([expect.any(SyntaxError)]);
    client.close();
  });

  it('throws a RangeError for an invalid close, before anything is sent, and stays open', async () => {
    const { server: s, client, context } = await pair();
    server = s;
    expect(() => context.close(1006)).toThrow(RangeError);
    expect(context.state).toBe('open');
    client.close();
  });

  it('refuses to send a value that has no JSON form', async () => {
    const { server: s, client, context } = await pair();
    server = s;
    await expect(context.send(undefined)).rejects.toThrow(
      'Cannot send undefined: it has no JSON form.',
    );
    client.close();
  });
});
