import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { Deferred } from './utils/deferred';
import { FaultProxy } from './utils/fault-proxy';
import { until } from './utils/until';
import { within } from './utils/within';

const KiB = 1024;
const MiB = 1024 * KiB;
const TIMEOUT = 3000;

/** One end of a TCP connection as the test sees it: every byte it received, and whether it closed. */
class Peer {
  error: NodeJS.ErrnoException | undefined;
  isClosed = false;
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private readonly watchers = new Set<() => void>();

  constructor(
    readonly socket: Socket,
    readonly name: string,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.length += chunk.length;
      this.notify();
    });
    socket.on('error', (error) => (this.error = error));
    socket.on('close', () => {
      this.isClosed = true;
      this.notify();
    });
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Resolves once `bytes` bytes have arrived in all. */
  receives(bytes: number): Promise<void> {
    return this.when(
      () => this.length >= bytes,
      () => `${this.name} received ${this.length} of ${bytes} bytes`,
    );
  }

  /** Resolves once the socket has closed. */
  closes(): Promise<void> {
    return this.when(() => this.isClosed, `${this.name}'s socket never closed`);
  }

  private when(
    condition: () => boolean,
    what: string | (() => string),
  ): Promise<void> {
    if (condition()) return Promise.resolve();
    let watcher = () => {};
    const reached = new Promise<void>((resolve) => {
      watcher = () => condition() && resolve();
      this.watchers.add(watcher);
    });
    return within(reached, TIMEOUT, what).finally(() =>
      this.watchers.delete(watcher),
    );
  }

  private notify(): void {
    for (const watcher of this.watchers) watcher();
  }
}

/** A plain TCP server, echoing or not; the server side of each connection it accepts, in order. */
class Target {
  readonly peers: Peer[] = [];
  private readonly arrivals: Array<Deferred<Peer>> = [];

  private constructor(readonly server: Server) {
    server.on('connection', (socket: Socket) => {
      const peer = new Peer(socket, `server #${this.peers.length}`);
      this.arrival(this.peers.length).resolve(peer);
      this.peers.push(peer);
    });
  }

  static async start({ echo }: { echo: boolean }): Promise<Target> {
    const server = createServer((socket) => {
      if (echo) socket.pipe(socket);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const target = new Target(server);
    targets.push(target);
    return target;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The server side of the `index`-th connection (0-based), once accepted. */
  connection(index: number): Promise<Peer> {
    return within(
      this.arrival(index).promise,
      TIMEOUT,
      `the server never accepted connection #${index}`,
    );
  }

  async close(): Promise<void> {
    for (const peer of this.peers) peer.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private arrival(index: number): Deferred<Peer> {
    return (this.arrivals[index] ??= new Deferred<Peer>());
  }
}

let targets: Target[];
let proxies: FaultProxy[];
let clients: Peer[];

async function startProxy(target: Target): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ port: target.port });
  proxies.push(proxy);
  return proxy;
}

/** Dials `port` without waiting for the connection (a refused one may reset before it reports 'connect'). */
function dial(port: number, name = 'client'): Peer {
  const client = new Peer(connect(port, '127.0.0.1'), name);
  clients.push(client);
  return client;
}

/** A client connected through `proxy`, and the server side of its connection. */
async function connectThrough(
  proxy: FaultProxy,
  target: Target,
  index: number,
): Promise<{ client: Peer; server: Peer }> {
  const client = dial(proxy.port, `client #${index}`);
  await within(
    once(client.socket, 'connect'),
    TIMEOUT,
    'client never connected',
  );
  return { client, server: await target.connection(index) };
}

const noConnectionsLeft = (proxy: FaultProxy) =>
  until(() => proxy.connections === 0, 'the proxy has no live connection');

beforeEach(() => {
  targets = [];
  proxies = [];
  clients = [];
});

afterEach(async () => {
  await Promise.all(proxies.map((proxy) => proxy.close()));
  for (const client of clients) client.socket.destroy();
  await Promise.all(targets.map((target) => target.close()));
});

describe('FaultProxy', () => {
  it('forwards bytes both ways, byte for byte, and closes both ends when a peer ends', async () => {
    const target = await Target.start({ echo: true });
    const proxy = await startProxy(target);
    expect(proxy.url('/chat')).toBe(`ws://127.0.0.1:${proxy.port}/chat`);
    const { client, server } = await connectThrough(proxy, target, 0);
    const payload = randomBytes(4 * MiB);

    client.socket.write(payload);
    await client.receives(payload.length);

    expect(client.received.equals(payload)).toBe(true);
    expect(server.received.equals(payload)).toBe(true);
    expect(proxy.stats[0].up).toEqual({
      forwarded: 4 * MiB,
      held: 0,
      dropped: 0,
    });
    expect(proxy.stats[0].down).toEqual({
      forwarded: 4 * MiB,
      held: 0,
      dropped: 0,
    });
    expect(proxy.accepted).toBe(1);
    expect(proxy.connections).toBe(1);

    client.socket.end();
    await Promise.all([server.closes(), client.closes()]);
    await noConnectionsLeft(proxy);
    expect(proxy.stats[0].state).toBe('closed');
  });

  describe('schedule', () => {
    it('a cut after N bytes up delivers exactly N bytes, cutting a chunk, then closes both ends', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      proxy.schedule([{ direction: 'up', bytes: 10 }]);
      const { client, server } = await connectThrough(proxy, target, 0);

      client.socket.write('abcdefghijklmnopqrstuvwxy');
      await Promise.all([server.closes(), client.closes()]);

      expect(server.received.toString()).toBe('abcdefghij');
      expect(proxy.stats[0].up).toEqual({
        forwarded: 10,
        held: 0,
        dropped: 15,
      });
      await noConnectionsLeft(proxy);
    });

    it('counts the cut offset across chunks', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      proxy.schedule([{ direction: 'up', bytes: 10 }]);
      const { client, server } = await connectThrough(proxy, target, 0);

      client.socket.write('aaaa');
      await server.receives(4);
      client.socket.write('bbbb');
      await server.receives(8);
      expect(server.isClosed).toBe(false);
      client.socket.write('cccc');
      await Promise.all([server.closes(), client.closes()]);

      expect(server.received.toString()).toBe('aaaabbbbcc');
      expect(proxy.stats[0].up.forwarded).toBe(10);
    });

    it('applies one entry per connection, in order, and cuts downstream', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      proxy.schedule([undefined, { direction: 'down', bytes: 5 }]);

      const first = await connectThrough(proxy, target, 0);
      first.server.socket.write('pong-pong-pong');
      await first.client.receives(14);

      const second = await connectThrough(proxy, target, 1);
      second.server.socket.write('0123456789ab');
      await Promise.all([second.client.closes(), second.server.closes()]);

      expect(second.client.received.toString()).toBe('01234');
      expect(proxy.stats[1].down.forwarded).toBe(5);
      expect(first.client.isClosed).toBe(false);
      expect(first.client.received.toString()).toBe('pong-pong-pong');
      await until(
        () => proxy.connections === 1,
        'only the first connection is live',
      );
    });

    it('with bytes 0, the first byte in that direction cuts the connection', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      proxy.schedule([{ direction: 'down', bytes: 0 }]);
      const { client, server } = await connectThrough(proxy, target, 0);

      client.socket.write('GET');
      await server.receives(3);
      server.socket.write('HTTP/1.1 101');
      await Promise.all([client.closes(), server.closes()]);

      expect(client.received.length).toBe(0);
      expect(proxy.stats[0].down).toEqual({
        forwarded: 0,
        held: 0,
        dropped: 12,
      });
    });

    it('rejects a malformed entry with a RangeError', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      expect(() => proxy.schedule([{ direction: 'up', bytes: -1 }])).toThrow(
        RangeError,
      );
      expect(() => proxy.schedule([{ direction: 'up', bytes: 1.5 }])).toThrow(
        RangeError,
      );
      expect(() =>
        proxy.schedule([{ direction: 'sideways' as 'up', bytes: 1 }]),
      ).toThrow(RangeError);
    });
  });

  it('cutAll closes both ends of every live connection, and new connections still go through', async () => {
    const target = await Target.start({ echo: true });
    const proxy = await startProxy(target);
    const first = await connectThrough(proxy, target, 0);
    const second = await connectThrough(proxy, target, 1);

    proxy.cutAll();
    await Promise.all(
      [first, second].flatMap(({ client, server }) => [
        client.closes(),
        server.closes(),
      ]),
    );
    await noConnectionsLeft(proxy);

    const third = await connectThrough(proxy, target, 2);
    third.client.socket.write('still here');
    await third.client.receives(10);
    expect(third.client.received.toString()).toBe('still here');
  });

  it('a WebSocket client sees 1006, no close frame, when its connection is cut', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    try {
      const { port } = wss.address() as AddressInfo;
      const proxy = await FaultProxy.start({ port });
      proxies.push(proxy);
      const serverSide = new Deferred<WebSocket>();
      wss.on('connection', (socket) => serverSide.resolve(socket));
      const ws = new WebSocket(proxy.url('/'));
      const clientClosed = once(ws, 'close');
      await within(once(ws, 'open'), TIMEOUT, 'the WebSocket never opened');
      const server = await within(
        serverSide.promise,
        TIMEOUT,
        'no server socket',
      );
      const serverClosed = once(server, 'close');

      proxy.cutAll();

      const [[clientCode], [serverCode]] = await within(
        Promise.all([clientClosed, serverClosed]),
        TIMEOUT,
        'a WebSocket end never closed',
      );
      expect(clientCode).toBe(1006);
      expect(serverCode).toBe(1006);
    } finally {
      await new Promise((resolve) => wss.close(resolve));
    }
  });

  describe('stall', () => {
    it('holds bytes in both directions and resume delivers them', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      const { client, server } = await connectThrough(proxy, target, 0);

      proxy.stall();
      client.socket.write('abc');
      server.socket.write('wxyz');
      await until(
        () => proxy.stats[0].up.held === 3 && proxy.stats[0].down.held === 4,
        'the proxy holds 3 bytes up and 4 down',
      );
      expect(server.received.length).toBe(0);
      expect(client.received.length).toBe(0);

      proxy.resume();
      await Promise.all([server.receives(3), client.receives(4)]);
      expect(server.received.toString()).toBe('abc');
      expect(client.received.toString()).toBe('wxyz');
      expect(proxy.stats[0].up).toEqual({ forwarded: 3, held: 0, dropped: 0 });
      expect(proxy.stats[0].down).toEqual({
        forwarded: 4,
        held: 0,
        dropped: 0,
      });
    });

    it('holds a write larger than its buffer by pushing back on the sender, and delivers it whole', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      const { client, server } = await connectThrough(proxy, target, 0);
      const payload = randomBytes(16 * MiB);

      proxy.stall();
      client.socket.write(payload);
      // the proxy holds up to 64 KiB, then stops reading: the rest waits in the kernel and in the client
      await until(
        () => proxy.stats[0].up.held >= 64 * KiB,
        'the proxy holds 64 KiB',
      );
      expect(proxy.stats[0].up.held).toBeLessThanOrEqual(128 * KiB);
      expect(client.socket.writableLength).toBeGreaterThan(0);
      expect(server.received.length).toBe(0);

      proxy.resume();
      await server.receives(payload.length);
      expect(server.received.equals(payload)).toBe(true);
      expect(proxy.stats[0].up).toEqual({
        forwarded: 16 * MiB,
        held: 0,
        dropped: 0,
      });
    });

    it('holds the end of a stream like its bytes', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      const { client, server } = await connectThrough(proxy, target, 0);

      proxy.stall();
      client.socket.end('bye');
      await until(
        () => proxy.stats[0].up.held === 3,
        'the proxy holds 3 bytes',
      );
      expect(server.isClosed).toBe(false);

      proxy.resume();
      await Promise.all([server.closes(), client.closes()]);
      expect(server.received.toString()).toBe('bye');
    });
  });

  describe('blackhole', () => {
    it('drops bytes both ways without closing a socket', async () => {
      const target = await Target.start({ echo: false });
      const proxy = await startProxy(target);
      const { client, server } = await connectThrough(proxy, target, 0);

      proxy.blackhole();
      client.socket.write('hello');
      server.socket.write('goodbye');
      await until(
        () =>
          proxy.stats[0].up.dropped === 5 && proxy.stats[0].down.dropped === 7,
        'the proxy dropped 5 bytes up and 7 down',
      );

      expect(server.received.length).toBe(0);
      expect(client.received.length).toBe(0);
      expect(client.isClosed || server.isClosed).toBe(false);
      expect(proxy.stats[0]).toMatchObject({
        state: 'blackholed',
        up: { forwarded: 0, held: 0 },
        down: { forwarded: 0, held: 0 },
      });
      expect(proxy.connections).toBe(1);
    });

    it('leaves each socket to its own peer, and forwards connections made afterwards', async () => {
      const target = await Target.start({ echo: true });
      const proxy = await startProxy(target);
      const { client, server } = await connectThrough(proxy, target, 0);
      proxy.blackhole();

      const later = await connectThrough(proxy, target, 1);
      later.client.socket.write('through');
      await later.client.receives(7);
      expect(later.client.received.toString()).toBe('through');

      client.socket.end();
      await client.closes();
      expect(server.isClosed).toBe(false);
      expect(proxy.connections).toBe(2);

      server.socket.destroy();
      await until(
        () => proxy.connections === 1,
        'the blackholed connection is released',
      );
      expect(proxy.stats[0].state).toBe('closed');
    });
  });

  it('refuse destroys new connections at once until allow, and spares live ones', async () => {
    const target = await Target.start({ echo: true });
    const proxy = await startProxy(target);
    const live = await connectThrough(proxy, target, 0);

    proxy.refuse();
    const refused = dial(proxy.port, 'refused client');
    await refused.closes();
    expect(refused.received.length).toBe(0);
    expect(proxy.accepted).toBe(1);
    expect(target.peers).toHaveLength(1);
    live.client.socket.write('alive');
    await live.client.receives(5);

    proxy.allow();
    const { client } = await connectThrough(proxy, target, 1);
    client.socket.write('welcome');
    await client.receives(7);
    expect(client.received.toString()).toBe('welcome');
    expect(proxy.accepted).toBe(2);
  });

  it('closes the client when the server is unreachable', async () => {
    const gone = createServer().listen(0, '127.0.0.1');
    await once(gone, 'listening');
    const { port } = gone.address() as AddressInfo;
    await new Promise((resolve) => gone.close(resolve));
    const proxy = await FaultProxy.start({ port });
    proxies.push(proxy);

    const client = dial(proxy.port);
    await client.closes();
    await noConnectionsLeft(proxy);
    expect(proxy.accepted).toBe(1);
  });

  it('a reset by one peer closes the other end', async () => {
    const target = await Target.start({ echo: false });
    const proxy = await startProxy(target);
    const { client, server } = await connectThrough(proxy, target, 0);

    server.socket.resetAndDestroy();
    await client.closes();
    await noConnectionsLeft(proxy);
  });

  it('close destroys every connection and stops listening', async () => {
    const target = await Target.start({ echo: true });
    const proxy = await startProxy(target);
    const { client, server } = await connectThrough(proxy, target, 0);

    await proxy.close();
    await Promise.all([client.closes(), server.closes()]);
    expect(proxy.connections).toBe(0);

    const late = dial(proxy.port, 'late client');
    await late.closes();
    expect(late.error?.code).toBe('ECONNREFUSED');
  });
});
