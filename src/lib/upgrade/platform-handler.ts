import type { HttpServer } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UNSUPPORTED_PLATFORM } from '../messages';

/** Runs a request through an HTTP platform's own routing: middleware, hooks, then the route. */
export type PlatformHandler = (
  request: IncomingMessage,
  response: ServerResponse,
) => void;

/**
 * The request handler of the app's HTTP platform: the Express application is one, Fastify
 * exposes its router as `routing` (what `@fastify/websocket` routes upgrades through).
 * @throws Error for a platform that has neither
 */
export function platformHandler(adapter: HttpServer): PlatformHandler {
  const instance = adapter.getInstance() as
    PlatformHandler | { routing?: PlatformHandler } | undefined;
  if (typeof instance === 'function') return instance;
  const routing = instance?.routing;
  if (typeof routing === 'function') return routing.bind(instance);
  throw new Error(UNSUPPORTED_PLATFORM(adapter.constructor.name));
}

/**
 * Routes in the order Fastify would pick among them, the most specific first: segment by segment,
 * a literal before a `:param`, a `:param` before an optional group or a wildcard; otherwise in
 * declaration order. Registered in that order, Express (which takes the first match) runs the
 * same endpoint as Fastify: `@Ws('o/admin')` and not `@Ws('o/:room')` for `/o/admin`, wherever
 * they were declared, so that the endpoint whose origin policy and guards apply is the same.
 */
export function bySpecificity<T extends { path: string }>(routes: T[]): T[] {
  const ranks = new Map(routes.map(({ path }) => [path, segmentRanks(path)]));
  return [...routes].sort((a, b) => {
    const [left, right] = [ranks.get(a.path)!, ranks.get(b.path)!];
    for (let i = 0; i < Math.min(left.length, right.length); i++) {
      if (left[i] !== right[i]) return left[i] - right[i];
    }
    return 0;
  });
}

function segmentRanks(path: string): number[] {
  return path
    .split('/')
    .map((segment) =>
      /[*{]/.test(segment) ? 2 : segment.includes(':') ? 1 : 0,
    );
}

/**
 * Express matches routes in the order they were added, and Nest added the app's own routes before
 * ours: a `@Get(':id')` or a catch-all would answer our upgrades. Moves our last `count` routes in
 * front of the first route, after the middleware. Fastify needs nothing: it picks the most
 * specific route whatever the order.
 */
export function routeFirst(adapter: HttpServer, count: number): void {
  const instance = adapter.getInstance() as
    { router?: { stack?: { route?: unknown }[] } } | undefined;
  const stack = instance?.router?.stack;
  if (!Array.isArray(stack) || count === 0) return;
  const ours = stack.splice(stack.length - count, count);
  const firstRoute = stack.findIndex((layer) => layer.route);
  stack.splice(firstRoute === -1 ? stack.length : firstRoute, 0, ...ours);
}
