import { RouterExecutionContext } from '@nestjs/core/router/router-execution-context';
import type { IncomingMessage } from 'node:http';
import { isObservable, lastValueFrom } from 'rxjs';
import { PendingUpgrade } from './pending-upgrade';

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

  /**
   * Nest calls the handler with its arguments only: the upgrade is passed after them, as one
   * argument more (`handlerArguments` takes it back off).
   */
  override createPipesFn(
    ...params: Parameters<RouterExecutionContext['createPipesFn']>
  ) {
    const applyPipes = super.createPipesFn(...params);
    return <TRequest, TResponse>(
      args: unknown[],
      request: TRequest,
      response: TResponse,
      next: Function,
    ) => {
      args.push(PendingUpgrade.of(request as IncomingMessage));
      return applyPipes?.(args, request, response, next);
    };
  }
}

/** Splits what the handler was called with into the method's arguments and the upgrade. */
export function handlerArguments(args: unknown[]): [unknown[], PendingUpgrade] {
  return [args.slice(0, -1), args[args.length - 1] as PendingUpgrade];
}
