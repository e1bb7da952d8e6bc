import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

/** One direction of a proxied connection that can hold each chunk back for a while, in order. */
class LaggingFlow {
  private last = 0;

  constructor(
    private readonly destination: Socket,
    private readonly lag: () => number,
  ) {}

  write(chunk: Buffer): void {
    const lag = this.lag();
    if (!lag && this.last <= Date.now()) {
      this.destination.write(chunk);
      return;
    }
    // after the chunks before it, and at least `lag` ms after it came
    const at = Math.max(Date.now() + lag, this.last);
    this.last = at;
    setTimeout(() => {
      if (!this.destination.destroyed) this.destination.write(chunk);
    }, at - Date.now());
  }
}

/**
 * A TCP proxy in front of Redis that tells a RedisBackplane's two connections apart (the
 * subscriber is the one that sends SSUBSCRIBE) and adds latency to one direction of either:
 * what a busy subscriber connection (a backlog of messages) or a busy command connection (a
 * queue of commands) does to the order in which an instance hears things.
 */
export class LaggingRedisProxy {
  /** ms added to what Redis sends on subscriber connections. */
  subscriberDown = 0;
  /** ms added to what the instance sends on command connections. */
  commandsUp = 0;
  /** ms added to what the instance sends on subscriber connections (its SSUBSCRIBEs). */
  subscriberUp = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: number): Promise<LaggingRedisProxy> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const proxy = new LaggingRedisProxy(
      server,
      (server.address() as { port: number }).port,
    );
    server.on('connection', (client) => proxy.accept(client, target));
    return proxy;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private accept(client: Socket, target: number): void {
    const redis = connect(target, '127.0.0.1');
    client.setNoDelay(true);
    redis.setNoDelay(true);
    let subscriber = false;
    const up = new LaggingFlow(redis, () =>
      subscriber ? this.subscriberUp : this.commandsUp,
    );
    const down = new LaggingFlow(client, () =>
      subscriber ? this.subscriberDown : 0,
    );
    client.on('data', (chunk: Buffer) => {
      if (!subscriber && /ssubscribe/i.test(chunk.toString('latin1'))) {
        subscriber = true;
      }
      up.write(chunk);
    });
    redis.on('data', (chunk: Buffer) => down.write(chunk));
    for (const [socket, other] of [
      [client, redis],
      [redis, client],
    ]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.sockets.delete(socket);
        other.destroy();
      });
    }
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
