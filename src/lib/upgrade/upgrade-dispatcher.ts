import { Injectable, Logger } from '@nestjs/common';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { match, MatchFunction } from 'path-to-regexp';
import type { AllowedOrigins } from '../interfaces/ws-endpoint-options.interface';
import { NOT_FOUND, ORIGIN_REFUSED, SHUTTING_DOWN } from '../messages';
import { WebSocketSessions } from '../session/websocket-sessions';
import { refuseOrigin } from './origin-policy';
import { PendingUpgrade } from './pending-upgrade';

type RequestListener = (
  request: IncomingMessage,
  response: PendingUpgrade['response'],
) => void;

/** A path the dispatcher claims, with what it checks before the HTTP pipeline. */
export interface ClaimedRoute {
  path: string;
  allowedOrigins: AllowedOrigins;
}

interface CompiledRoute {
  matches: MatchFunction<object>;
  allowedOrigins: AllowedOrigins;
}

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
  private routes: CompiledRoute[] = [];
  private detach?: () => void;

  constructor(private readonly sessions: WebSocketSessions) {}

  /**
   * Shared by every upgrade socket: a closure made in `dispatch` would keep its upgrade reachable
   * for the life of the connection.
   */
  private readonly onSocketError = (error: Error) =>
    this.logger.debug(`Upgrade socket error: ${error.message}`);

  /** Starts claiming upgrades for `routes`, handing each to `handle` (the HTTP app). */
  attach(
    server: Server,
    routes: ClaimedRoute[],
    handle: RequestListener,
  ): void {
    this.routes = routes.map(({ path, allowedOrigins }) => ({
      matches: match(path, { decode: false }),
      allowedOrigins,
    }));
    const ownEmit = Object.getOwnPropertyDescriptor(server, 'emit');
    const originalEmit = server.emit.bind(server);
    const notFound = (request: IncomingMessage, socket: Duplex) => {
      if (server.listenerCount('upgrade') === 1) {
        const message = NOT_FOUND(request.method ?? 'GET', request.url ?? '/');
        answer(socket, 404, 'Not Found', message);
      }
    };
    // A listener must exist, or Node treats upgrade requests as plain requests.
    server.on('upgrade', notFound);
    server.emit = ((event: string, ...args: unknown[]) => {
      const route =
        event === 'upgrade' && this.find(args[0] as IncomingMessage);
      if (route) {
        this.dispatch(
          route,
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

  private find(request: IncomingMessage): CompiledRoute | undefined {
    const path = (request.url ?? '/').split('?', 1)[0];
    return this.routes.find((route) => route.matches(path) !== false);
  }

  private dispatch(
    route: CompiledRoute,
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    handle: RequestListener,
  ): void {
    socket.on('error', this.onSocketError);
    if (this.sessions.isDraining) {
      return answer(socket, 503, 'Service Unavailable', SHUTTING_DOWN);
    }
    const refusal = refuseOrigin(route.allowedOrigins, request);
    if (refusal) {
      this.logger.warn(
        ORIGIN_REFUSED(request.headers.origin!, request.url ?? '/', refusal),
      );
      return answer(socket, 403, 'Forbidden', 'Origin not allowed');
    }
    const response = new PendingUpgrade(request, socket, head).response;
    // after the callback of Node's HTTP parser that emitted the upgrade has returned: run inside
    // it, the pipeline and the handshake took a sixth more instructions (callgrind, a handshake
    // without a guard: 454k against 379k)
    queueMicrotask(() => handle(request, response));
  }
}

/** Writes an HTTP error in Nest's JSON shape to a raw socket and closes it. */
function answer(
  socket: Duplex,
  status: number,
  error: string,
  message: string,
): void {
  const body = JSON.stringify({ message, error, statusCode: status });
  socket.on('error', () => undefined);
  socket.end(
    `HTTP/1.1 ${status} ${error}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
