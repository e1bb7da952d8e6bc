import { HttpException, HttpServer } from '@nestjs/common';
import type { ExceptionFilterMetadata } from '@nestjs/common/interfaces/exceptions/exception-filter-metadata.interface';
import type { ExceptionsHandler } from '@nestjs/core/exceptions/exceptions-handler';
import { ExecutionContextHost } from '@nestjs/core/internal';
import type { ServerResponse } from 'node:http';
import { types } from 'node:util';
import { SafeLogger } from '../errors/safe-logger';
import { describeError, isInstance } from '../errors/describe-error';
import { WebSocketDisconnect } from '../errors/ws-disconnect.exception';
import { REFUSAL_FAILED, UPGRADE_REQUIRED } from '../messages';
import { filtersOf } from './nest-internals';
import type { PendingUpgrade } from './pending-upgrade';
import { errorBody } from './refusal';

/** 426 Upgrade Required, which `HttpStatus` does not name. */
const UPGRADE_REQUIRED_STATUS = 426;

/**
 * The failure path before the upgrade, for one endpoint: an error of the pipeline (a guard, a
 * pipe, an interceptor, the origin policy, the handshake) becomes an HTTP answer through the
 * app's exception filters, as for any route. It cannot throw: a filter that throws or rejects,
 * or a logger that fails on the value, ends in a 500 of our own, logged once.
 */
export class HandshakeFailure {
  private readonly logger = new SafeLogger(HandshakeFailure.name);

  constructor(
    private readonly exceptions: ExceptionsHandler,
    private readonly adapter: HttpServer,
  ) {
    // Nest leaves the rejection of an async filter unhandled: each filter is guarded here
    exceptions.setCustomFilters(
      filtersOf(exceptions).map((filter) => this.guarded(filter)),
    );
  }

  /** Answers a refused upgrade, unless a timeout or the shutdown answered it first. */
  refuse(
    upgrade: PendingUpgrade,
    error: unknown,
    request: unknown,
    response: unknown,
    next?: Function,
  ): void {
    if (!upgrade.routing) {
      this.logger.debug(
        `Upgrade to ${upgrade.request.url} already answered; dropped its late outcome: ${describeError(error)}`,
      );
    } else if (isInstance(error, WebSocketDisconnect)) {
      upgrade.abandon(); // the peer left while the pipeline ran
    } else {
      this.answer(error, request, response, next);
    }
  }

  /** A plain request (no `Upgrade`) on a WebSocket route: 426 with `Upgrade: websocket`. */
  upgradeRequired(
    request: { url?: string },
    response: unknown,
    next?: Function,
  ): void {
    try {
      this.adapter.setHeader(response, 'Upgrade', 'websocket');
    } catch {
      // a response that cannot take a header still gets its status below
    }
    this.answer(
      new HttpException(
        UPGRADE_REQUIRED(request.url ?? '/'),
        UPGRADE_REQUIRED_STATUS,
      ),
      request,
      response,
      next,
    );
  }

  private answer(
    error: unknown,
    request: unknown,
    response: unknown,
    next?: Function,
  ): void {
    try {
      this.exceptions.next(
        error as Error,
        new ExecutionContextHost([request, response, next]),
      );
    } catch (failure) {
      this.fallback(failure, request, response);
    }
  }

  private guarded({
    func,
    exceptionMetatypes,
  }: ExceptionFilterMetadata): ExceptionFilterMetadata {
    return {
      exceptionMetatypes,
      func: (exception, host) => {
        const [request, response] = host.getArgs();
        let result: unknown;
        try {
          result = func(exception, host);
        } catch (failure) {
          return this.fallback(failure, request, response);
        }
        return types.isPromise(result)
          ? result.then(undefined, (failure: unknown) =>
              this.fallback(failure, request, response),
            )
          : result;
      },
    };
  }

  /** What answering threw: logged once; the peer gets 500, or its socket goes when it has an answer. */
  private fallback(
    failure: unknown,
    request: unknown,
    response: unknown,
  ): void {
    this.logger.error(
      REFUSAL_FAILED((request as { url?: string }).url ?? '/'),
      describeError(failure),
    );
    const raw = rawResponse(response);
    try {
      if (raw && !raw.headersSent) {
        raw.writeHead(500, {
          'Content-Type': 'application/json; charset=utf-8',
        });
        raw.end(errorBody(500, 'Internal server error'));
      } else if (raw && !raw.writableEnded) {
        raw.destroy();
      }
    } catch {
      raw?.destroy();
    }
  }
}

/** Node's response under Express's (the same object) or Fastify's reply (`raw`). */
function rawResponse(response: unknown): ServerResponse | undefined {
  const candidate =
    (response as { raw?: ServerResponse } | undefined)?.raw ?? response;
  return typeof (candidate as ServerResponse | undefined)?.writeHead ===
    'function'
    ? (candidate as ServerResponse)
    : undefined;
}
