import { BadRequestException } from '@nestjs/common';
import { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { CloseCode } from '../context/close-code.enum';
import type {
  UpgradeRequest,
  WebSocketContext,
} from '../context/websocket-context';
import { describeError } from '../errors/describe-error';
import { SafeLogger } from '../errors/safe-logger';
import { WebSocketDisconnect } from '../errors/ws-disconnect.exception';
import {
  HANDSHAKE_TIMED_OUT,
  INVALID_VERSION,
  PLATFORM_FAILED,
  SESSION_NOT_STARTED,
} from '../messages';
import type {
  PendingHandshake,
  SessionRegistry,
} from '../session/session-registry';
import type { PlatformHandler } from './platform-handler';
import { destroyWhenFlushed, errorBody, refuseSocket } from './refusal';

/**
 * `waiting` for the socket (a response to an earlier request on it is still being written),
 * `routing` through the HTTP pipeline, then `accepted` (the handshake is done), `answered` (an
 * HTTP answer was written; the socket goes once it is flushed) or `abandoned` (dropped).
 */
type UpgradePhase =
  'waiting' | 'routing' | 'accepted' | 'answered' | 'abandoned';

/**
 * An upgrade request on its way through the HTTP pipeline (middleware, guards, param pipes)
 * to the handshake. The HTTP response is written to the raw socket until the upgrade completes.
 * Nothing before the upgrade waits for ever: after `handshakeTimeout` the peer gets 503, or its
 * socket is dropped when an answer can no longer be written.
 */
export class PendingUpgrade implements PendingHandshake {
  /** The session's context, once the handshake is complete. */
  context?: WebSocketContext;
  /**
   * The request as the HTTP platform routed it (Express's request is the upgrade request itself,
   * Fastify's wraps it): where guards leave `user` and the router `params` and `query`.
   */
  routed?: UpgradeRequest;
  /** The HTTP response on the raw socket, once routing has begun. */
  response?: ServerResponse;
  private phase: UpgradePhase = 'waiting';
  /** When `handshakeTimeout` runs out (ms since the epoch). */
  readonly deadline: number;

  constructor(
    readonly request: IncomingMessage,
    readonly socket: Duplex,
    private readonly head: Buffer,
    private readonly registry: SessionRegistry,
    timeout: number,
  ) {
    pending.set(request, this);
    this.deadline = Date.now() + timeout;
    registry.admit(this, timeout);
  }

  /** The upgrade `request` is part of, while it goes through the HTTP pipeline. */
  static of(request: IncomingMessage | { raw: IncomingMessage }) {
    return pending.get('raw' in request ? request.raw : request);
  }

  /** Whether the pipeline may still accept or answer it: no timeout or shutdown answered first. */
  get routing(): boolean {
    return this.phase === 'routing';
  }

  /** Runs the request through the HTTP platform (`handle`) with a response on the raw socket. */
  route(handle: PlatformHandler): void {
    if (this.phase !== 'waiting') return;
    // a socket that is gone, or that still carries another response, cannot take ours
    if (this.socket.destroyed || responseOn(this.socket)) return this.abandon();
    this.phase = 'routing';
    try {
      const response = new ServerResponse(this.request);
      this.response = response;
      response.shouldKeepAlive = false;
      response.assignSocket(this.socket as never);
      // a refused upgrade ends with its HTTP answer: the socket has no HTTP parser left to reuse it
      response.once('finish', () => this.answered());
      handle(this.request, response);
    } catch (error) {
      logger.error(
        PLATFORM_FAILED(this.request.url ?? '/'),
        describeError(error),
      );
      this.abandon(500, 'Internal server error');
    }
  }

  /** Done with the pipeline: the request, which lives as long as the connection, lets go of it. */
  release(): void {
    pending.delete(this.request);
  }

  /**
   * Completes the handshake and hands the socket to `wrap` in the same tick. Rejects with 1006
   * when the peer left while the guards ran or the upgrade was answered meanwhile (timeout,
   * shutdown), and with a 400 when the handshake headers are invalid (missing key, unsupported
   * version…).
   */
  accept<T>(server: WebSocketServer, wrap: (ws: WebSocket) => T): Promise<T> {
    if (
      this.phase !== 'routing' ||
      !this.socket.readable ||
      !this.socket.writable
    ) {
      return Promise.reject(new WebSocketDisconnect(CloseCode.Abnormal));
    }
    const version = Number(this.request.headers['sec-websocket-version']);
    if (version !== 13 && version !== 8) {
      // RFC 6455 §4.4: the answer names the versions the server speaks
      this.response!.setHeader('Sec-WebSocket-Version', '13, 8');
      return Promise.reject(new BadRequestException(INVALID_VERSION));
    }
    return new Promise((resolve, reject) => {
      // with a listener, ws leaves the answer to us, so that it goes through the app's exception filters
      const onClientError = (
        error: Error,
        _socket: unknown,
        request: IncomingMessage,
      ) => {
        if (request !== this.request) return;
        server.off('wsClientError', onClientError);
        reject(new BadRequestException(error.message));
      };
      server.on('wsClientError', onClientError);
      server.handleUpgrade(this.request, this.socket, this.head, (ws) => {
        server.off('wsClientError', onClientError);
        this.phase = 'accepted';
        this.settle();
        this.response!.detachSocket(this.socket as never);
        this.response = undefined;
        try {
          // Express links the request to its response and router and caches its parsed URL:
          // dead weight for the life of the connection (cleared, not deleted: a deletion turns
          // the request into a slow dictionary object). Its `params` is a null-prototype
          // dictionary of some 200 bytes even when empty; a plain copy is a tenth of that.
          const { params } = this.request as UpgradeRequest;
          Object.assign(this.request, {
            res: undefined,
            next: undefined,
            _parsedUrl: undefined,
            ...(params && { params: { ...params } }),
          });
          // wrapped at once: frames that came with the request are emitted before any await resumes
          resolve(wrap(ws));
        } catch (error) {
          // the 101 is written: what is left to say goes in a close frame
          reject(abort(ws, error, this.request.url));
        }
      });
    });
  }

  /**
   * Answers `status` when nothing has been written yet, else drops the socket; the pipeline's
   * late outcome is then ignored. For the handshake timeout, the shutdown and a pipeline that
   * settled without an answer.
   */
  abandon(status?: number, message = ''): void {
    const { phase, response, socket } = this;
    if (phase === 'accepted' || phase === 'abandoned') return;
    if (status && phase === 'routing' && response && !response.headersSent) {
      this.phase = 'answered';
      response.writeHead(status, {
        'Content-Type': 'application/json; charset=utf-8',
      });
      response.end(errorBody(status, message));
      return;
    }
    if (status && phase === 'waiting') {
      // answered in its turn, after the responses to the requests pipelined before it
      this.phase = 'abandoned';
      this.settle();
      return whenSocketFree(socket, () =>
        refuseSocket(socket, status, message),
      );
    }
    this.phase = 'abandoned';
    this.settle();
    socket.destroy();
  }

  /** `handshakeTimeout` ran out: 503, or the socket dropped when an answer is under way. */
  expire(): void {
    if (this.phase === 'routing' || this.phase === 'waiting') {
      logger.warn(HANDSHAKE_TIMED_OUT(this.request.url ?? '/'));
    }
    this.abandon(503, 'Handshake timed out');
  }

  /** The HTTP answer is written: the socket goes once it is flushed, whatever the peer does. */
  private answered(): void {
    if (this.phase === 'accepted') return;
    this.phase = 'answered';
    this.socket.once('close', () => this.settle());
    destroyWhenFlushed(this.socket);
  }

  private settle(): void {
    this.registry.forget(this);
  }
}

/** Closes a connection whose session could not be made (1011), logged once. */
function abort(ws: WebSocket, error: unknown, path = '/'): WebSocketDisconnect {
  ws.on('error', () => undefined);
  ws.close(CloseCode.InternalError, 'Internal server error');
  logger.error(SESSION_NOT_STARTED(path), describeError(error));
  return new WebSocketDisconnect(CloseCode.InternalError);
}

/**
 * Calls `then` once no response of an earlier request pipelined on this keep-alive socket is
 * being written: as each finishes, Node gives the socket to the next one queued.
 */
export function whenSocketFree(socket: Duplex, then: () => void): void {
  const response = responseOn(socket);
  if (!response) return then();
  response.once('finish', () => whenSocketFree(socket, then));
}

/** The response to an earlier request on this keep-alive socket, while it is being written. */
export function responseOn(socket: Duplex): ServerResponse | undefined {
  return (
    (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage ??
    undefined
  );
}

const logger = new SafeLogger('PendingUpgrade');

/** The upgrades going through the pipeline, by request (Fastify's routed request wraps it as `raw`). */
const pending = new WeakMap<IncomingMessage, PendingUpgrade>();
