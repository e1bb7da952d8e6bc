import { RouterExecutionContext } from '@nestjs/core/router/router-execution-context';

/**
 * Nest's own HTTP execution context (guards, interceptors, param decorators and pipes, exactly as
 * for an HTTP route), except that the handler's result is not written as an HTTP response: after
 * the upgrade, the socket belongs to the WebSocket session.
 */
export class WsExecutionContext extends RouterExecutionContext {
  override createHandleResponseFn() {
    return async () => undefined;
  }
}
