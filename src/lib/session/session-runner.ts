import {
  ArgumentsHost,
  BadRequestException,
  HttpException,
  Injectable,
  ServiceUnavailableException,
} from '@nestjs/common';
import type { ExceptionFilterMetadata } from '@nestjs/common/interfaces/exceptions/exception-filter-metadata.interface';
import { selectExceptionFilterMetadata } from '@nestjs/common/internal';
import { WebSocketServer } from 'ws';
import { SafeLogger } from '../errors/safe-logger';
import { CloseCode } from '../context/close-code.enum';
import {
  ContextSettings,
  MessageParser,
  WebSocketContext,
} from '../context/websocket-context';
import type { WsEndpointDefinition } from '../discovery/ws-endpoint-explorer';
import { describeError, isInstance } from '../errors/describe-error';
import { WebSocketDisconnect } from '../errors/ws-disconnect.exception';
import type { WebSocketMessage } from '../context/websocket-message';
import {
  FILTER_FAILED,
  FILTER_UNSETTLED,
  HANDLER_FAILED,
  NO_COMMON_PROTOCOL,
  SHUTTING_DOWN,
} from '../messages';
import type { HeartbeatMonitor } from '../transport/heartbeat';
import type { PendingUpgrade } from '../upgrade/pending-upgrade';
import { closeForError, errorFrameFor } from './close-for-error';
import { sendResult } from './handler-result';
import { SessionRegistry } from './session-registry';
import { SOCKET_ARGUMENT } from '../constants';
import { GroupHub } from '../groups/group-hub';
import { userIdOf } from './user-id';
import { WsMetrics } from '../metrics/ws-metrics';
import {
  EnvelopeEndpoints,
  resumeRequestOf,
} from '../reliable/envelope-endpoints';

/** What the runner needs of one endpoint, built once at bootstrap. */
export interface SessionEndpoint {
  definition: WsEndpointDefinition;
  server: WebSocketServer;
  /** Shared by the endpoint's connections. */
  settings: ContextSettings;
}

/** Ends a detached session whose handler failed (the endpoint's exception filters, then a close). */
type SessionErrorHandler = (
  context: WebSocketContext,
  error: unknown,
) => Promise<void>;

/**
 * Runs one session: completes the handshake, calls the handler with the socket context, sends
 * what an `Observable` or `AsyncIterable` handler produces, closes with 1000 when the handler
 * settles, and turns an error into a close code through one failure path that cannot throw.
 */
@Injectable()
export class SessionRunner {
  private readonly logger = new SafeLogger(SessionRunner.name);

  constructor(
    private readonly registry: SessionRegistry,
    private readonly envelopes: EnvelopeEndpoints,
    private readonly groups: GroupHub,
    private readonly metrics: WsMetrics,
  ) {}

  /**
   * Completes the handshake and runs the handler. Without `detach`, resolves when the session
   * ends and rejects with the handler's error; with it, resolves once the handshake is done,
   * runs the session on its own, so that nothing of the HTTP pipeline stays reachable from it,
   * and hands its error to `detach`.
   */
  async run(
    endpoint: SessionEndpoint,
    upgrade: PendingUpgrade,
    instance: object,
    args: unknown[],
    detach?: SessionErrorHandler,
  ): Promise<void> {
    const { definition } = endpoint;
    const { options } = definition;
    if (this.registry.isDraining) {
      throw new ServiceUnavailableException(SHUTTING_DOWN);
    }
    assertProtocolOffered(
      upgrade,
      options.protocols,
      options.rejectUnknownProtocols,
    );
    const { envelope } = endpoint.settings;
    const resume = envelope?.reliable && resumeRequestOf(upgrade.request);
    if (resume && envelope) {
      const link = this.envelopes.find(
        resume,
        envelope,
        endpoint.settings.userId(upgrade.routed?.user),
      );
      if (link) {
        // the session goes on on this connection; its handler runs already
        return upgrade.accept(endpoint.server, (ws) =>
          link.attach(ws, upgrade.request.socket, resume.ack, true),
        );
      }
    }
    const context = await upgrade.accept(endpoint.server, (ws) => {
      const opened = new WebSocketContext(
        ws,
        upgrade.request,
        endpoint.settings,
        upgrade.routed,
      );
      // counted once it has a connection, whose close the context counts (`transportClosed`)
      endpoint.settings.metrics?.sessionOpened();
      return opened;
    });
    if (resume) context.markResumeFailed();
    upgrade.context = context;
    if (!detach) {
      const done = this.runHandler(definition, context, instance, args);
      this.registry.track(
        context,
        Promise.allSettled([context.closed, done]).then(() =>
          this.registry.release(context),
        ),
      );
      return done;
    }
    this.registry.track(
      context,
      this.runHandler(definition, context, instance, args, detach),
    );
  }

  /**
   * Ends a session whose handler (or an interceptor around it) threw. An exception filter bound
   * to the endpoint that catches the error runs first, with a `'ws'` host whose client is the
   * context: it may close with a code of its own; a socket it leaves open gets the default code.
   * Logged once. Never throws nor rejects, whatever was thrown and whatever the filter does.
   */
  async fail(
    definition: WsEndpointDefinition,
    context: WebSocketContext,
    error: unknown,
    filters: ExceptionFilterMetadata[],
    host: ArgumentsHost,
  ): Promise<void> {
    try {
      if (endsSession(error, context)) return;
      const close = closeForError(error);
      if (!(await this.filtered(definition, error, filters, host))) {
        this.logFailure(definition, context, error, close);
      }
      if (context.state === 'open')
        await context.close(close.code, close.reason);
    } catch (failure) {
      // only a logger that throws gets here: the session still ends
      context.terminate();
      this.logger.error(
        HANDLER_FAILED(definition.name),
        describeError(failure),
      );
    }
  }

  /** The context settings of an endpoint's connections: its options, its parser, its heartbeat. */
  contextSettings(
    definition: WsEndpointDefinition,
    parse: MessageParser,
    heartbeat?: HeartbeatMonitor,
  ): ContextSettings {
    return {
      ...definition.options,
      heartbeat,
      parse,
      sessions: this.registry,
      envelope: this.envelopes.settings(definition),
      userId: userIdOf(definition.name, definition.options.userId),
      groups: this.groups,
      metrics: this.metrics.endpoint(definition.paths.join(' | ')),
      onRejectedMessage: (socket, error, message) =>
        this.rejectMessage(definition, socket, error, message),
    };
  }

  /**
   * Runs the endpoint's exception filter for `error`, if one catches it: whether it did. One
   * that throws is logged once, with the error it was handling, and the default close follows.
   */
  private async filtered(
    definition: WsEndpointDefinition,
    error: unknown,
    filters: ExceptionFilterMetadata[],
    host: ArgumentsHost,
  ): Promise<boolean> {
    let filter: ExceptionFilterMetadata | undefined;
    try {
      filter = selectExceptionFilterMetadata(filters, error);
    } catch {
      // a value whose prototype chain throws is caught by no filter
    }
    if (!filter) return false;
    const { closeTimeout } = definition.options;
    try {
      const func = filter.func;
      if (!(await settlesWithin(() => func(error, host), closeTimeout))) {
        this.logger.warn(FILTER_UNSETTLED(definition.name, closeTimeout));
      }
    } catch (filterError) {
      this.logger.error(
        FILTER_FAILED(definition.name),
        `${describeError(filterError)}\nwhile handling: ${describeError(error)}`,
      );
    }
    return true;
  }

  private logFailure(
    definition: WsEndpointDefinition,
    context: WebSocketContext,
    error: unknown,
    close: { code: number; reason: string; expected: boolean },
  ): void {
    if (close.expected) {
      this.logger.warn(
        `${definition.name} closed connection ${context.id} with ${close.code}: ${close.reason}`,
      );
    } else {
      this.logger.error(HANDLER_FAILED(definition.name), describeError(error));
    }
  }

  /**
   * Calls the handler, sends what it produces, and closes with 1000 when it is done. Its error is
   * thrown, to the interceptors around the session; or, when the session is detached, handed to
   * `onError`, and the session is released once its connection has closed.
   */
  private runHandler(
    definition: WsEndpointDefinition,
    context: WebSocketContext,
    instance: object,
    args: unknown[],
    onError?: SessionErrorHandler,
  ): Promise<void> {
    let result: unknown;
    try {
      result = definition.method.apply(
        instance,
        args.map((arg) => (arg === SOCKET_ARGUMENT ? context : arg)),
      );
    } catch (error) {
      result = Promise.reject(error);
    }
    // chained on the handler's promise rather than awaited in an async function here, whose frame
    // would live as long as the connection
    return Promise.resolve(result).then(
      (value) => this.complete(value, context, onError),
      (error) => this.end(context, error, onError),
    );
  }

  /** After the handler returned: sends what it produced, then closes with 1000. */
  private async complete(
    result: unknown,
    context: WebSocketContext,
    onError?: SessionErrorHandler,
  ): Promise<void> {
    try {
      await sendResult(result, context);
      if (context.state === 'open') await context.close(CloseCode.Normal);
    } catch (error) {
      return this.end(context, error, onError);
    }
    if (onError) await this.release(context);
  }

  /** After the handler failed: a disconnect is a normal end, any other error goes to `onError`. */
  private async end(
    context: WebSocketContext,
    error: unknown,
    onError?: SessionErrorHandler,
  ): Promise<void> {
    if (!endsSession(error, context)) {
      if (!onError) throw error;
      await onError(context, error);
    }
    if (onError) await this.release(context);
  }

  /** Forgets a detached session once its connection has closed. */
  private async release(context: WebSocketContext): Promise<void> {
    await context.closed;
    this.registry.release(context);
  }

  private async rejectMessage(
    definition: WsEndpointDefinition,
    context: WebSocketContext,
    error: unknown,
    message: WebSocketMessage,
  ): Promise<void> {
    if (!isInstance(error, HttpException)) throw error;
    const frame = errorFrameFor(error);
    this.logger.debug(
      `${definition.name} rejected a message on ${context.id}: ${describeError(frame.error.message)}`,
    );
    if (definition.options.validation === 'close') {
      await context.close(CloseCode.InvalidPayload, 'Invalid message');
      throw new WebSocketDisconnect(
        CloseCode.InvalidPayload,
        'Invalid message',
      );
    }
    // a request's client waits for its reply: it gets the failure in its place
    if (message.id !== undefined) await context.replyError(message, error);
    else await context.send(frame);
  }
}

/**
 * Whether what `run` returns settles within `ms` (rejecting if it rejects in time): a filter
 * that never settles must not leave its session open.
 */
async function settlesWithin(run: () => unknown, ms: number): Promise<boolean> {
  const settled = Promise.resolve(run()).then(() => true);
  settled.catch(() => undefined); // a rejection after the deadline is nobody's to handle
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((resolve) => {
    timer = setTimeout(resolve, ms, false);
  });
  try {
    return await Promise.race([settled, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Refuses, when the endpoint says so, a client whose offered subprotocols it speaks none of. */
function assertProtocolOffered(
  upgrade: PendingUpgrade,
  supported: string[],
  rejectUnknown: boolean,
): void {
  const header = upgrade.request.headers['sec-websocket-protocol'];
  if (!rejectUnknown || !header) return;
  const offered = header
    .split(',')
    .map((protocol) => protocol.trim())
    .filter(Boolean);
  if (offered.length && !supported.some((p) => offered.includes(p))) {
    throw new BadRequestException(NO_COMMON_PROTOCOL(offered, supported));
  }
}

/**
 * Whether `error` is the end of this session's own connection, a normal end. A disconnect of
 * another socket (a failed broadcast, say) is an error of this handler like any other.
 */
function endsSession(error: unknown, context: WebSocketContext): boolean {
  return isInstance(error, WebSocketDisconnect) && context.state !== 'open';
}
