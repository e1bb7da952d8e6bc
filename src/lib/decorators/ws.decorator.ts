import { SetMetadata } from '@nestjs/common';
import { WS_ENDPOINT_METADATA } from '../constants';
import { WsEndpointOptions } from '../interfaces/ws-endpoint-options.interface';

/** What `@Ws()` records on a handler method. */
export interface WsEndpointMetadata {
  path: string | string[];
  options: WsEndpointOptions;
}

/**
 * Accepts WebSocket connections on `path`, relative to the controller's path (with the global
 * prefix, URI versioning and `:params`, like an HTTP route). The method is called once per
 * connection, after the guards and param pipes have passed and the handshake is complete.
 *
 * @param path route path, or several; `''` is the controller's own path
 * @param options overrides of the module's defaults for this endpoint
 * @example
 * @Ws('handle')
 * async handle(@Socket() socket: WebSocketContext) {
 *   for await (const message of socket) await socket.send(`echo: ${message.text}`);
 * }
 * @publicApi
 */
export function Ws(
  path: string | string[] = '',
  options: WsEndpointOptions = {},
): MethodDecorator {
  return SetMetadata<string, WsEndpointMetadata>(WS_ENDPOINT_METADATA, {
    path,
    options,
  });
}
