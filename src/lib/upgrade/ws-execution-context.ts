import { RouterExecutionContext } from '@nestjs/core/router/router-execution-context';
import { isObservable, lastValueFrom } from 'rxjs';

/**
 * Nest's own HTTP execution context (guards, interceptors, param decorators and pipes, exactly as
 * for an HTTP route), except that the handler's result is not written as an HTTP response: after
 * the upgrade, the socket belongs to the WebSocket session.
 */
export class WsExecutionContext extends RouterExecutionContext {
  override createHandleResponseFn() {
    // with interceptors the session runs when their Observable is subscribed to, and ends when it completes
    return async (result: unknown) => {
      if (isObservable(result))
        await lastValueFrom(result, { defaultValue: undefined });
    };
  }
}
