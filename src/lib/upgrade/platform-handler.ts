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
