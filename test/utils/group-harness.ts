// A Nest app whose sessions only register themselves and wait for their end, so that a test
// drives their groups directly (`session('ann').join(...)`), as a handler would; with raw `ws`
// clients and the package's client that record what they get from the moment they are made.
import { Controller, INestApplication, UseGuards } from '@nestjs/common';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import {
  Socket,
  WebSocketContext,
  WebSocketSessions,
  Ws,
  WsEndpointsModule,
  type WsEndpointsModuleOptions,
} from 'nestjs-ws-endpoints';
import { connect, type WsClient } from 'nestjs-ws-endpoints/client';
import { type CapturedLogs, type Platform, startApp } from './test-app';
import { until } from './until';
import { QueryUser } from './query-user.guard';

/** The sessions of every harness, by `?name=`, newest last. */
const byName = new Map<string, WebSocketContext[]>();

function register(socket: WebSocketContext): Promise<void> {
  const { name } = socket.query;
  if (typeof name !== 'string') return socket.closed;
  byName.set(name, [...(byName.get(name) ?? []), socket]);
  return socket.closed;
}

@Controller()
@UseGuards(QueryUser)
class HarnessController {
  @Ws('plain', { heartbeat: false })
  plain(@Socket() socket: WebSocketContext) {
    return register(socket);
  }

  @Ws('reliable', { heartbeat: false, reliable: { resumeWindow: 60_000 } })
  reliable(@Socket() socket: WebSocketContext) {
    return register(socket);
  }

  /** A session that ends 300 ms after its connection drops. */
  @Ws('brief', { heartbeat: false, reliable: { resumeWindow: 300 } })
  brief(@Socket() socket: WebSocketContext) {
    return register(socket);
  }
}

/** A raw `ws` client and the frames it got, as text, from the moment it is made. */
export class RawMember {
  readonly got: string[] = [];
  readonly binary: Buffer[] = [];
  readonly ws: WebSocket;
  closed = false;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.binary.push(data);
      this.got.push(data.toString());
    });
    this.ws.on('close', () => (this.closed = true));
    this.ws.on('error', () => undefined);
  }
}

/** The package's client and what it got, from the moment it is made. */
export class ClientMember {
  readonly got: Array<{
    text: string;
    group?: string;
    binary: boolean;
    data: string | Uint8Array;
  }> = [];
  readonly lost: string[] = [];
  readonly client: WsClient;

  constructor(url: string, options: Parameters<typeof connect>[1] = {}) {
    this.client = connect(url, {
      WebSocket: WebSocket as never,
      reconnect: { initialDelay: 10, maxDelay: 50 },
      ...options,
    });
    this.client.on('message', (m) =>
      this.got.push({
        text: m.text,
        group: m.group,
        binary: m.type === 'binary',
        data: m.data,
      }),
    );
    this.client.on('lost', ({ group }) => this.lost.push(group));
  }

  texts(group?: string): string[] {
    return this.got
      .filter((m) => group === undefined || m.group === group)
      .map((m) => m.text);
  }
}

/** An app with the harness's endpoints, and the clients a test made, closed by `reset()`. */
export class GroupHarness {
  private readonly raws: RawMember[] = [];
  private readonly clients: ClientMember[] = [];

  private constructor(
    readonly app: INestApplication,
    readonly logs: CapturedLogs,
    readonly base: string,
  ) {}

  static async start(
    options: WsEndpointsModuleOptions = {},
    platform: Platform = 'express',
  ): Promise<GroupHarness> {
    const { app, logs } = await startApp(
      {
        imports: [WsEndpointsModule.forRoot(options)],
        controllers: [HarnessController],
      },
      undefined,
      platform,
    );
    const base = (await app.getUrl()).replace('http', 'ws');
    return new GroupHarness(app, logs, base);
  }

  get port(): number {
    return Number(new URL(this.base).port);
  }

  get<T>(type: abstract new (...args: never[]) => T): T {
    return this.app.get(type as never);
  }

  /** A raw client on `path` (`/plain?name=…`); resolves once its session is registered. */
  async raw(path: string, base = this.base): Promise<RawMember> {
    const name = new URL(path, 'ws://x').searchParams.get('name') ?? '';
    const before = byName.get(name)?.length ?? 0;
    const made = new RawMember(`${base}${path}`);
    this.raws.push(made);
    await until(
      () => (byName.get(name)?.length ?? 0) > before,
      `${name} connects`,
    );
    return made;
  }

  /** The package's client on `path`; resolves once its first session is registered. */
  async client(
    path: string,
    options?: Parameters<typeof connect>[1],
    base = this.base,
  ): Promise<ClientMember> {
    const name = new URL(path, 'ws://x').searchParams.get('name') ?? '';
    const before = byName.get(name)?.length ?? 0;
    const made = new ClientMember(`${base}${path}`, options);
    this.clients.push(made);
    await until(
      () =>
        (byName.get(name)?.length ?? 0) > before &&
        made.client.state === 'open',
      `${name} connects`,
    );
    return made;
  }

  /** The newest session named `name`. */
  session(name: string): WebSocketContext {
    const sessions = byName.get(name);
    if (!sessions?.length) throw new Error(`No session named ${name}`);
    return sessions.at(-1)!;
  }

  sessions(name: string): WebSocketContext[] {
    return byName.get(name) ?? [];
  }

  /** Closes the test's clients and waits for every session to end. */
  async reset(): Promise<void> {
    for (const made of this.clients.splice(0)) made.client.close();
    for (const made of this.raws.splice(0)) made.ws.terminate();
    // a reliable session whose client is gone would wait out its resume window
    for (const sessions of byName.values()) {
      for (const session of sessions) session.terminate();
    }
    await this.app.get(WebSocketSessions).settled();
    byName.clear();
  }

  async close(): Promise<void> {
    await this.reset();
    await this.app.close();
  }
}

/** The shard channels under `prefix` that Redis has subscribers for, sorted. */
export async function shardChannels(
  redis: Redis,
  prefix: string,
): Promise<string[]> {
  const channels = (await redis.call(
    'PUBSUB',
    'SHARDCHANNELS',
    `${prefix}*`,
  )) as string[];
  return channels.sort();
}
