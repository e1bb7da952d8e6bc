import type { ExecutionContext } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * Whether a guard, interceptor or filter runs for a WebSocket upgrade rather than an HTTP request:
 * interceptors wrap a whole session, so an HTTP timeout or caching interceptor should let it pass.
 * @example if (isWebSocketUpgrade(context)) return next.handle();
 * @publicApi
 */
export function isWebSocketUpgrade(context: ExecutionContext): boolean {
  if (context.getType() !== 'http') return false;
  const request = context
    .switchToHttp()
    .getRequest<{ headers?: IncomingHttpHeaders }>();
  return request?.headers?.upgrade?.toLowerCase() === 'websocket';
}
