import { Injectable, Logger } from '@nestjs/common';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { match, MatchFunction } from 'path-to-regexp';
import { NOT_FOUND } from '../messages';
import { PendingUpgrade, pendingUpgrades } from './pending-upgrade';

type RequestListener = (
  request: IncomingMessage,
  response: PendingUpgrade['response'],
) => void;

/**
 * The one `upgrade` listener of the HTTP server that decides who gets an upgrade request: one
 * whose path is a `@Ws` route goes through the app's HTTP pipeline to its endpoint; any other
 * goes on to the other `upgrade` listeners (gateways, socket.io, graphql-ws), or gets 404 when
 * there is none. Claimed requests never reach the other listeners, so an adapter that destroys
 * upgrades it does not own (`WsAdapter`) cannot destroy ours.
 */
@Injectable()
export class UpgradeDispatcher {
  private readonly logger = new Logger(UpgradeDispatcher.name);
  private routes: MatchFunction<object>[] = [];
  private detach?: () => void;

  /** Starts claiming upgrades for `paths`, handing each to `handle` (the HTTP app). */
  attach(server: Server, paths: string[], handle: RequestListener): void {
    this.routes = paths.map((path) => match(path, { decode: false }));
    const ownEmit = Object.getOwnPropertyDescriptor(server, 'emit');
    const originalEmit = server.emit.bind(server);
    const notFound = (request: IncomingMessage, socket: Duplex) => {
      if (server.listenerCount('upgrade') === 1) this.notFound(request, socket);
    };
    // A listener must exist, or Node treats upgrade requests as plain requests.
    server.on('upgrade', notFound);
    server.emit = ((event: string, ...args: unknown[]) => {
      if (event === 'upgrade' && this.claims(args[0] as IncomingMessage)) {
        this.dispatch(
          args[0] as IncomingMessage,
          args[1] as Duplex,
          args[2] as Buffer,
          handle,
        );
        return true;
      }
      return originalEmit(event, ...args);
    }) as Server['emit'];
    this.detach = () => {
      if (ownEmit) Object.defineProperty(server, 'emit', ownEmit);
      else Reflect.deleteProperty(server, 'emit');
      server.off('upgrade', notFound);
    };
  }

  /** Gives the server back its own `emit`. */
  dispose(): void {
    this.detach?.();
    this.detach = undefined;
  }

  private claims(request: IncomingMessage): boolean {
    const path = (request.url ?? '/').split('?', 1)[0];
    return this.routes.some((route) => route(path) !== false);
  }

  private dispatch(
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    handle: RequestListener,
  ): void {
    socket.on('error', (error) =>
      this.logger.debug(`Upgrade socket error: ${error.message}`),
    );
    const upgrade = new PendingUpgrade(request, socket, head);
    pendingUpgrades.run(upgrade, () => handle(request, upgrade.response));
  }

  private notFound(request: IncomingMessage, socket: Duplex): void {
    const body = JSON.stringify({
      message: NOT_FOUND(request.method ?? 'GET', request.url ?? '/'),
      error: 'Not Found',
      statusCode: 404,
    });
    socket.on('error', () => undefined);
    socket.end(
      `HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
}
