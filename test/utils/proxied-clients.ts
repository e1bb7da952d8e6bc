import type { INestApplication } from '@nestjs/common';
import {
  connect,
  type ConnectOptions,
  type WsClient,
} from 'nestjs-ws-endpoints/client';
import { FaultProxy } from './fault-proxy';

/**
 * `nestjs-ws-endpoints/client`s of an app, each through the test's own fault proxy, with
 * `defaults` under each one's options: start it in `beforeEach`, stop it in `afterEach`.
 */
export class ProxiedClients {
  proxy!: FaultProxy;
  private readonly clients: WsClient[] = [];

  constructor(private readonly defaults: ConnectOptions) {}

  async start(app: INestApplication): Promise<FaultProxy> {
    const { port } = new URL(await app.getUrl());
    return (this.proxy = await FaultProxy.start({ port: Number(port) }));
  }

  connect(path: string, options: ConnectOptions = {}): WsClient {
    return this.track(
      connect(this.proxy.url(path), { ...this.defaults, ...options }),
    );
  }

  /** Closes `client`, which does not go through the proxy, with the others. */
  track(client: WsClient): WsClient {
    this.clients.push(client);
    return client;
  }

  /** Closes every client, then the proxy. */
  async stop(): Promise<void> {
    for (const client of this.clients.splice(0)) client.close();
    await this.proxy.close();
  }
}
