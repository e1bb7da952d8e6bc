import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import { CloseCode } from '../context/close-code.enum';
import type { EndpointMetrics } from '../metrics/endpoint-metrics';
import { WebSocketMessage } from '../context/websocket-message';
import { SafeLogger } from '../errors/safe-logger';
import {
  disconnectOf,
  WebSocketDisconnect,
} from '../errors/ws-disconnect.exception';
import {
  CLOSE_RECEIVED,
  CLOSE_SENT,
  SLOW_CONSUMER,
  SOCKET_CLOSED,
} from '../messages';
import type { HeartbeatMonitor, HeartbeatPeer } from './heartbeat';
import { InboundFlow, InboundQueue } from './inbound-queue';
import { SendWindow } from './send-window';
import {
  copyHeldFragments,
  holdInflation,
  resumeParsing,
  stopParsing,
} from './ws-internals';

/**
 * The states of one connection: `open`; `closeSent` once we sent a close frame, `closeReceived`
 * once the peer started closing; then `closed` after a close frame came back, or `aborted` when
 * the connection dropped without one.
 */
export type TransportState =
  'open' | 'closeSent' | 'closeReceived' | 'closed' | 'aborted';

/** Flow control and dead-peer detection of an endpoint's connections. */
export interface TransportSettings {
  /** Unread messages at which reading pauses. */
  inboundQueue: number;
  /** Unread bytes (after decompression) at which reading pauses. */
  inboundQueueBytes: number;
  /** Buffered bytes above which `send()` waits. */
  sendHighWaterMark: number;
  /** ms `send()` waits before the peer is closed with 1013. */
  sendTimeout: number;
  /** Watches the peer for dead-peer detection; none when heartbeats are off. */
  heartbeat?: HeartbeatMonitor;
  /** Counts the endpoint's messages, bytes and waiting sends. */
  metrics?: EndpointMetrics;
}

/** Who learns how the connection ends: the session on top of it. */
export interface TransportObserver {
  /** The server started to end the connection on its own (shutdown, slow consumer). */
  transportEnding(reason: WebSocketDisconnect): void;
  /** The connection is closed; nothing more will be received or sent. */
  transportClosed(disconnect: WebSocketDisconnect): void;
}

/**
 * Where a connection's frames go when a session on top of it reads an envelope: it decodes them
 * and queues the messages in the connection's queue, which is then the session's.
 */
export interface FrameSink {
  frame(transport: WsTransport, data: Buffer, isBinary: boolean): void;
}

/** ws's frame options, by binary × fin, made once rather than per message. */
const SEND_OPTIONS = [
  { binary: false, fin: false },
  { binary: false, fin: true },
  { binary: true, fin: false },
  { binary: true, fin: true },
].map((options) => Object.freeze(options));

/** What `send()` returns for a frame handed to the socket at once: one promise for all. */
export const SENT = Promise.resolve();
const RESOLVED = SENT;
const ABORTED = { code: CloseCode.Abnormal, reason: '' };

/**
 * One WebSocket connection: the messages it received that no one has read (bounded in count and
 * in bytes; above the bound reading pauses, so the peer's TCP window closes), what waits to be
 * sent (above `sendHighWaterMark` a send waits), the heartbeat, and the close states. While a
 * ping is unanswered, reading goes on to twice the bound, so that a pong queued behind a few
 * unread messages is found; a peer whose pong stays out of reach for `heartbeat.timeout` is
 * dropped like a silent one.
 */
export class WsTransport implements InboundFlow, HeartbeatPeer {
  readonly inbound: InboundQueue;
  heartbeatAt = 0;
  awaitingPong = false;

  private phase: TransportState = 'open';
  /** How the connection ended, once it has. */
  private ended?: WebSocketDisconnect;
  /** The close frame we sent, or the end the server started (shutdown, slow consumer). */
  private closing?: WebSocketDisconnect;
  private window?: SendWindow;
  private readonly releaseInflation?: () => void;

  constructor(
    private readonly ws: WebSocket,
    /** The connection's socket, as the upgrade request has it. */
    private readonly socket: Duplex,
    private readonly settings: TransportSettings,
    private readonly observer: TransportObserver,
    /** The session's queue and frame decoder, when the session outlives this connection. */
    private readonly sink?: FrameSink,
    inbound?: InboundQueue,
  ) {
    this.inbound = inbound ?? new InboundQueue(this);
    (ws as TransportSocket)[TRANSPORT] = this;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('error', onError);
    ws.on('close', onClose);
    this.releaseInflation = holdInflation(ws, () => ws.isPaused);
    copyHeldFragments(ws);
    settings.heartbeat?.watch(this);
  }

  get state(): TransportState {
    if (this.phase === 'open' && this.ws.readyState !== WebSocket.OPEN)
      return 'closeReceived';
    return this.phase;
  }

  /** How the connection ended; `undefined` until it has. */
  get disconnect(): WebSocketDisconnect | undefined {
    return this.ended;
  }

  /** The negotiated subprotocol, `''` when none. */
  get protocol(): string {
    return this.ws.protocol;
  }

  /** Whether reading is paused for backpressure. */
  get paused(): boolean {
    return this.ws.isPaused;
  }

  /** Bytes waiting to be sent: queued for compression or in the socket's buffer. */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** Whether a send now would wait: more than `sendHighWaterMark` bytes wait, or earlier sends. */
  get congested(): boolean {
    return (
      this.window?.mustWait ??
      this.ws.bufferedAmount > this.settings.sendHighWaterMark
    );
  }

  /** Whether the server started to end the connection, or it has ended: nothing may be sent. */
  private get sendable(): boolean {
    return this.state === 'open' && !this.closing;
  }

  /**
   * Sends a frame; while more than `sendHighWaterMark` bytes wait to be sent, or earlier sends
   * wait, it waits its turn. Never throws: a failure is a rejected promise.
   */
  send(payload: string | Buffer, binary: boolean, fin: boolean): Promise<void> {
    if (!this.sendable) return Promise.reject(this.closedError('send'));
    const window = (this.window ??= new SendWindow(
      this.ws,
      this.socket,
      this.settings.sendHighWaterMark,
      this.settings.sendTimeout,
      () => {
        this.end(CloseCode.TryAgainLater, SLOW_CONSUMER);
        return this.closedError('send');
      },
    ));
    const options = SEND_OPTIONS[Number(binary) * 2 + Number(fin)];
    if (window.mustWait) {
      this.settings.metrics?.backpressure();
      return window.whenOpen().then(() => this.write(payload, options, window));
    }
    return this.write(payload, options, window);
  }

  /**
   * Sends a close frame (the peer's answer, or `closeTimeout`, ends the connection). Reading
   * resumes, so that the peer's close frame is read even past unread messages; what arrives
   * beyond the queue's bound from then on is dropped.
   */
  close(code: number, reason: string): void {
    if (this.state !== 'open') return;
    this.phase = 'closeSent';
    this.closing ??= disconnectOf(code, reason);
    this.ws.close(code, reason);
    this.resume();
  }

  /** Starts closing with `code` on the server's own account: the observer hears of it at once. */
  end(code: number, reason: string): void {
    if (this.closing || this.ended) return;
    this.closing = disconnectOf(code, reason);
    this.observer.transportEnding(this.closing);
    this.close(code, reason);
  }

  /** Drops the connection without a close handshake. */
  terminate(): void {
    if (this.ended) return;
    this.phase = 'aborted';
    this.ws.terminate();
    this.releaseInflation?.();
  }

  /** Heartbeat: pings, and reads on past the queue's bound until the pong comes. */
  ping(): void {
    this.awaitingPong = true;
    this.ws.ping();
    this.regulate(this.inbound.size, this.inbound.bytes);
  }

  /** Heartbeat: the peer did not answer in time. */
  drop(): void {
    this.terminate();
  }

  /** Pauses reading while the queue holds its bound, resumes once it holds less. */
  regulate(messages: number, bytes: number): void {
    const factor = this.awaitingPong ? 2 : 1;
    if (
      this.phase === 'open' &&
      (messages >= this.settings.inboundQueue * factor ||
        bytes >= this.settings.inboundQueueBytes * factor)
    ) {
      if (!this.ws.isPaused) {
        this.ws.pause();
        stopParsing(this.ws);
      }
    } else if (this.ws.isPaused) {
      this.resume();
    }
  }

  /** Why a `receive()` or `send()` cannot be served, as the disconnect it rejects with. */
  closedError(action: string): WebSocketDisconnect {
    if (this.ended || this.phase === 'aborted') {
      const { code, reason } = this.ended ?? ABORTED;
      return disconnectOf(code, reason, SOCKET_CLOSED(action, code));
    }
    if (this.closing) {
      const { code, reason } = this.closing;
      return disconnectOf(code, reason, CLOSE_SENT(action, code));
    }
    return disconnectOf(CloseCode.Abnormal, '', CLOSE_RECEIVED(action));
  }

  private write(
    payload: string | Buffer,
    options: { binary: boolean; fin: boolean },
    window: SendWindow,
  ): Promise<void> {
    if (!this.sendable) return Promise.reject(this.closedError('send'));
    try {
      this.ws.send(payload, options, window.sendCallback);
    } catch (error) {
      return Promise.reject(error);
    }
    this.settings.metrics?.messageOut(
      typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length,
      options.fin,
    );
    return RESOLVED;
  }

  private resume(): void {
    this.ws.resume();
    resumeParsing(this.ws);
    this.releaseInflation?.();
  }

  /** Whether a message would go beyond the queue's bound. */
  private full(): boolean {
    return (
      this.inbound.size >= this.settings.inboundQueue ||
      this.inbound.bytes >= this.settings.inboundQueueBytes
    );
  }

  /** A message from the peer: queued, or dropped when it comes past the bound while closing. */
  received(data: Buffer, isBinary: boolean): void {
    this.settings.metrics?.messageIn(data.length);
    // past the bound once we have closed, or once the peer is gone: nobody will read it
    if (this.full() && (this.phase !== 'open' || this.socket.destroyed)) return;
    if (this.sink) return this.sink.frame(this, data, isBinary);
    this.inbound.push(new WebSocketMessage(data, isBinary ? 'binary' : 'text'));
  }

  /** The heartbeat's answer: the peer is alive, and reading goes back to the plain bound. */
  ponged(): void {
    this.awaitingPong = false;
    this.heartbeatAt = Date.now();
    this.regulate(this.inbound.size, this.inbound.bytes);
  }

  /** The connection is closed: pending reads end, waiting sends fail, the observer hears. */
  closedWith(code: number, reason: Buffer): void {
    this.ended = disconnectOf(code, reason.toString());
    this.phase =
      code === CloseCode.Abnormal || this.phase === 'aborted'
        ? 'aborted'
        : 'closed';
    this.settings.heartbeat?.forget(this);
    this.window?.close(this.closedError('send'));
    // a session that outlives the connection ends its queue itself
    if (!this.sink) this.inbound.end(() => this.closedError('receive'));
    this.observer.transportClosed(this.ended);
  }
}

const TRANSPORT = Symbol('ws-endpoints:transport');
const logger = new SafeLogger('WsTransport');
type TransportSocket = WebSocket & { [TRANSPORT]: WsTransport };

const transportOf = (ws: WebSocket) => (ws as TransportSocket)[TRANSPORT];

// the socket's listeners, shared by every connection (the socket is `this`): no closure each
function onMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  transportOf(this).received(data, isBinary);
}

function onPong(this: WebSocket): void {
  transportOf(this).ponged();
}

// ws closes the connection itself after a protocol error (1002, 1007, 1009); 'close' follows
function onError(error: Error): void {
  logger.debug(`WebSocket error: ${error.message}`);
}

function onClose(this: WebSocket, code: number, reason: Buffer): void {
  transportOf(this).closedWith(code, reason);
}
