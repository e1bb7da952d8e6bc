import { createParamDecorator } from '@nestjs/common';
import { SOCKET_ARGUMENT } from '../constants';

/**
 * Injects the connection's `WebSocketContext` into a `@Ws` handler.
 * @example async handle(@Socket() socket: WebSocketContext) { … }
 * @publicApi
 */
export const Socket = createParamDecorator(() => SOCKET_ARGUMENT);
