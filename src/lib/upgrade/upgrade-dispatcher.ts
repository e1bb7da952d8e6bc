import { Injectable } from '@nestjs/common';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { match, MatchFunction } from 'path-to-regexp';
import { SafeLogger } from '../errors/safe-logger';
import { NOT_FOUND, SHUTTING_DOWN } from '../messages';
import { SessionRegistry } from '../session/session-registry';
import { PendingUpgrade, responseOn, whenSocketFree } from './pending-upgrade';
import type { PlatformHandler } from './platform-handler';
import { refuseSocket } from './refusal';

/**
 * The one `upgrade` listener of the HTTP server that decides who gets an upgrade request: one
 * whose path is a `@Ws` route goes through the app's HTTP pipeline, where the platform picks
 * the route that runs; any other goes on to the other `upgrade` listeners (gateways,
 * socket.io, graphql-ws), or gets 404 when there is none. Claimed requests never reach the
 * other listeners, so an adapter that destroys upgrades it does not own (`WsAdapter`) cannot
 * destroy ours.
 */
@Injectable()
export class UpgradeDispatcher {
  private readonly logger = new SafeLogger(UpgradeDispatcher.name);
  private routes: MatchFunction<object>[] = [];
  private detach?: () => void;

  constructor(private readonly registry: SessionRegistry) {}

  /**
   * Shared by every upgrade socket: a closure made in `dispatch` would keep its upgrade reachable
   * for the life of the connection.
   */
  private readonly onSocketError = (error: Error) =>
    this.logger.debug(`Upgrade socket error: ${error.message}`);

  /**
   * Starts claiming upgrades on `paths`, handing each to `handle` (the HTTP platform), with
   * `handshakeTimeout` ms to be accepted or refused.
   */
  attach(
    server: Server,
    paths: string[],
    handle: PlatformHandler,
    handshakeTimeout: number,
  ): void {
    this.routes = paths.map((path) => match(path, { decode: false }));
    const ownEmit = Object.getOwnPropertyDescriptor(server, 'emit');
    const originalEmit = server.emit.bind(server);
    const notFound = (request: IncomingMessage, socket: Duplex) => {
      if (server.listenerCount('upgrade') === 1) {
        socket.on('error', this.onSocketError);
        const message = NOT_FOUND(request.method ?? 'GET', request.url ?? '/');
        refuseSocket(socket, 404, message);
      }
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
          handshakeTimeout,
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
    return this.routes.some((matches) => matches(path) !== false);
  }

  private dispatch(
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    handle: PlatformHandler,
    handshakeTimeout: number,
  ): void {
    socket.on('error', this.onSocketError);
    if (this.registry.isDraining) {
      return refuseSocket(socket, 503, SHUTTING_DOWN);
    }
    const upgrade = new PendingUpgrade(
      request,
      socket,
      head,
      this.registry,
      handshakeTimeout,
    );
    if (responseOn(socket))
      return whenSocketFree(socket, () => upgrade.route(handle));
    // after the callback of Node's HTTP parser that emitted the upgrade has returned: run inside
    // it, the pipeline and the handshake took a sixth more instructions (callgrind, a handshake
    // without a guard: 454k against 379k)
    queueMicrotask(() => upgrade.route(handle));
  }
}
