import { BadRequestException } from '@nestjs/common';
import { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { CloseCode } from '../context/close-code.enum';
import type {
  UpgradeRequest,
  WebSocketContext,
} from '../context/websocket-context';
import { WebSocketDisconnect } from '../errors/ws-disconnect.exception';

/**
 * An upgrade request on its way through the HTTP pipeline (middleware, guards, param pipes)
 * to the handshake. The HTTP response is written to the raw socket until the upgrade completes.
 */
export class PendingUpgrade {
  /** The session's context, once the handshake is complete. */
  context?: WebSocketContext;
  /**
   * The request as the HTTP platform routed it (Express's request is the upgrade request itself,
   * Fastify's wraps it): where guards leave `user` and the router `params` and `query`.
   */
  routed?: UpgradeRequest;
  readonly response: ServerResponse;

  constructor(
    readonly request: IncomingMessage,
    readonly socket: Duplex,
    private readonly head: Buffer,
  ) {
    this.response = new ServerResponse(request);
    this.response.shouldKeepAlive = false;
    this.response.assignSocket(socket as never);
    // a rejected upgrade ends with its HTTP answer: the socket has no HTTP parser left to reuse it
    this.response.once('finish', () => socket.end());
    pending.set(request, this);
  }

  /** The upgrade `request` is part of, while it goes through the HTTP pipeline. */
  static of(request: IncomingMessage | { raw: IncomingMessage }) {
    return pending.get('raw' in request ? request.raw : request);
  }

  /** Done with the pipeline: the request, which lives as long as the connection, lets go of it. */
  release(): void {
    pending.delete(this.request);
  }

  /**
   * Completes the handshake and hands the socket to `wrap` in the same tick. Rejects with 1006 when the peer left while the guards ran, and with
   * a 400 when the handshake headers are invalid (missing key, unsupported version…).
   */
  accept<T>(server: WebSocketServer, wrap: (ws: WebSocket) => T): Promise<T> {
    if (!this.socket.readable || !this.socket.writable) {
      return Promise.reject(new WebSocketDisconnect(CloseCode.Abnormal));
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
        this.response.detachSocket(this.socket as never);
        // Express links the request to its response and router and caches its parsed URL: dead
        // weight for the life of the connection (cleared, not deleted: a deletion turns the
        // request into a slow dictionary object). Its `params` is a null-prototype dictionary
        // of some 200 bytes even when empty; a plain copy is a tenth of that.
        const { params } = this.request as UpgradeRequest;
        Object.assign(this.request, {
          res: undefined,
          next: undefined,
          _parsedUrl: undefined,
          ...(params && { params: { ...params } }),
        });
        // wrapped at once: frames that came with the request are emitted before any await resumes
        resolve(wrap(ws));
      });
    });
  }
}

/** The upgrades going through the pipeline, by request (Fastify's routed request wraps it as `raw`). */
const pending = new WeakMap<IncomingMessage, PendingUpgrade>();
