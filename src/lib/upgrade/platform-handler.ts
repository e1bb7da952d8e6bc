import type { HttpServer } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UNSUPPORTED_PLATFORM } from '../messages';

/** Runs a request through an HTTP platform's own routing: middleware, hooks, then the route. */
export type PlatformHandler = (request: IncomingMessage, response: ServerResponse) => void;

/**
 * The request handler of the app's HTTP platform: the Express application is one, Fastify
 * exposes its router as `routing` (what `@fastify/websocket` routes upgrades through).
 * @throws Error for a platform that has neither
 */
export function platformHandler(adapter: HttpServer): PlatformHandler {
  const instance = adapter.getInstance() as
    | PlatformHandler
    | { routing?: PlatformHandler }
    | undefined;
  if (typeof instance === 'function') return instance;
  const routing = instance?.routing;
  if (typeof routing === 'function') return routing.bind(instance);
  throw new Error(UNSUPPORTED_PLATFORM(adapter.constructor.name));
}
