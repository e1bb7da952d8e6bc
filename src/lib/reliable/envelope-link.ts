import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { CloseCode } from '../context/close-code.enum';
import type { SessionLink } from '../context/session-link';
import { WebSocketMessage } from '../context/websocket-message';
import { SafeLogger } from '../errors/safe-logger';
import {
  disconnectOf,
  WebSocketDisconnect,
} from '../errors/ws-disconnect.exception';
import {
  CLOSE_SENT,
  FRAGMENTS_IN_ENVELOPE,
  INVALID_ENVELOPE,
  SESSION_EXPIRED,
  SLOW_CONSUMER,
  SOCKET_CLOSED,
} from '../messages';
import { AckSchedule } from '../protocol/ack-schedule';
import {
  Frame,
  type FrameKind,
  header,
  MAX_HEADER,
  parseHeader,
  type Welcome,
} from '../protocol/envelope';
import { InboundQueue, type InboundFlow } from '../transport/inbound-queue';
import {
  type FrameSink,
  SENT,
  type TransportObserver,
  type TransportSettings,
  WsTransport,
} from '../transport/ws-transport';
import { ReplayBuffer } from './replay-buffer';

/** How an endpoint's enveloped sessions behave. */
export interface EnvelopeSettings {
  /** Reliable mode; `undefined` for requests only, which keeps no order and does not resume. */
  reliable?: {
    resumeWindow: number;
    replayBuffer: number;
    /** Where suspended sessions wait for their client. */
    sessions: ResumableSessions;
  };
}

/** Where a reliable session can be found by its resume token while it waits for its client. */
export interface ResumableSessions {
  add(link: EnvelopeLink): void;
  remove(link: EnvelopeLink): void;
}

const PONG = header(Frame.Pong);
const logger = new SafeLogger('EnvelopeLink');

/**
 * A session's link to its client on an endpoint that speaks the envelope
 * (`src/lib/protocol/envelope.ts`): it decodes the frames, answers liveness pings and keeps the
 * handler's queue. In reliable mode it numbers what it sends, keeps it until the client acks it
 * (bounded in bytes: `send()` waits when full), drops what the client sent twice, and outlives
 * its connection: after a drop it is `reconnecting` for `resumeWindow`, and a connection that
 * presents its resume token continues it, after the missed messages are sent again.
 */
export class EnvelopeLink implements SessionLink, InboundFlow, FrameSink {
  readonly inbound: InboundQueue;
  /** The session's id, which the resume token names. */
  readonly id = randomBytes(16).toString('base64url');
  /**
   * The secret of the last resume token the client is known to have: the one of the welcome on
   * the connection where it last spoke (a welcome comes first).
   */
  private confirmedSecret?: Buffer;
  /**
   * The secrets of the welcomes since then, newest last, which the client may or may not have
   * read before their connection dropped: each still resumes, until the client speaks again.
   */
  private issuedSecrets: Buffer[] = [];
  /** Whether the client has sent a frame on the current connection. */
  private heard = false;
  /** How often the session has continued on a new connection. */
  resumes = 0;

  private transport?: WsTransport;
  private lastProtocol = '';
  private ended?: WebSocketDisconnect;
  /** The end the server started, or the close frame it sent: the session ends with its connection. */
  private closing?: WebSocketDisconnect;
  private readonly replay?: ReplayBuffer;
  /** The last of the client's messages received in order. */
  private received = 0;
  private readonly acks = new AckSchedule(() => {
    if (this.transport) {
      this.write(this.transport, header(Frame.Ack, this.received));
    }
  });
  private expiry?: NodeJS.Timeout;
  /** Ends a connected session whose client does not ack while a send waits for room. */
  private ackDeadline?: NodeJS.Timeout;

  constructor(
    private readonly settings: TransportSettings,
    private readonly envelope: EnvelopeSettings,
    private readonly observer: TransportObserver,
    /** The endpoint and the user the session belongs to: a resume must come from both. */
    readonly endpoint: string,
    readonly user: string | undefined,
  ) {
    this.inbound = new InboundQueue(this);
    const { reliable } = envelope;
    if (reliable) {
      this.replay = new ReplayBuffer(reliable.replayBuffer);
      reliable.sessions.add(this);
    }
  }

  get state(): SessionLink['state'] {
    if (this.ended) {
      return this.ended.code === CloseCode.Abnormal ? 'aborted' : 'closed';
    }
    return this.transport?.state ?? 'reconnecting';
  }

  get disconnect(): WebSocketDisconnect | undefined {
    return this.ended;
  }

  get protocol(): string {
    return this.lastProtocol;
  }

  get bufferedAmount(): number {
    return this.transport?.bufferedAmount ?? 0;
  }

  /** Whether the session is reliable: numbered, acked, resumable. */
  get reliable(): boolean {
    return this.replay !== undefined;
  }

  /** Whether a send now would wait: for acks (the replay buffer is full), or for the socket. */
  get congested(): boolean {
    return (this.replay?.full ?? false) || (this.transport?.congested ?? false);
  }

  /**
   * Whether `secret` is of a token that resumes this session: the last one the client is known
   * to have, or one of a welcome it may have missed.
   */
  accepts(secret: Buffer): boolean {
    return [this.confirmedSecret, ...this.issuedSecrets].some(
      (known) =>
        known !== undefined &&
        known.length === secret.length &&
        timingSafeEqual(known, secret),
    );
  }

  /**
   * Takes a connection: says welcome (with a new resume token), forgets what the client says it
   * has (`clientAck`) and sends the rest of what it has not acked again, in order.
   */
  attach(
    ws: WebSocket,
    socket: Duplex,
    clientAck: number,
    resumed: boolean,
  ): void {
    const previous = this.transport;
    if (previous) {
      // a client that resumes has given up on the old connection, whether or not we noticed
      this.transport = undefined;
      previous.terminate();
    }
    clearTimeout(this.expiry);
    this.expiry = undefined;
    if (resumed) {
      this.resumes++;
      this.settings.metrics?.resumed();
    }
    const observer = new ConnectionObserver(this);
    const transport = new WsTransport(
      ws,
      socket,
      this.settings,
      observer,
      this,
      this.inbound,
    );
    observer.transport = this.transport = transport;
    this.lastProtocol = transport.protocol;
    const { reliable } = this.envelope;
    const welcome: Welcome = {
      session: this.id,
      reliable: reliable !== undefined,
      resumed,
      ack: this.received,
    };
    if (reliable) {
      const secret = randomBytes(16);
      this.heard = false;
      // a client that loses welcome after welcome does not make the list grow without end
      this.issuedSecrets = [...this.issuedSecrets.slice(-3), secret];
      welcome.token = `${this.id}.${secret.toString('base64url')}`;
      welcome.resumeWindow = reliable.resumeWindow;
      welcome.replayBuffer = reliable.replayBuffer;
    }
    this.write(transport, header(Frame.Welcome) + JSON.stringify(welcome));
    if (this.replay) {
      this.replay.acked(Math.min(clientAck, this.replay.last));
      for (const entry of this.replay.unacked()) {
        this.write(transport, entry.frame, entry.binary);
      }
    }
    transport.regulate(this.inbound.size, this.inbound.bytes);
    this.awaitAcks();
  }

  /**
   * While a send waits for room and the client is connected, its acks must come within
   * `sendTimeout`, as a slow peer's reads must: else the session ends with 1013. While the client
   * is away, the send waits for it (the resume window bounds that).
   */
  private awaitAcks(): void {
    if (!this.replay?.waiting || !this.transport || this.ackDeadline) return;
    this.ackDeadline = setTimeout(() => {
      this.ackDeadline = undefined;
      this.end(CloseCode.TryAgainLater, SLOW_CONSUMER);
    }, this.settings.sendTimeout).unref();
  }

  private stopAwaitingAcks(): void {
    clearTimeout(this.ackDeadline);
    this.ackDeadline = undefined;
  }

  /**
   * Sends a payload as a frame of `kind` (a message, a reply): numbered and kept until acked in
   * reliable mode, where it resolves once the frame is handed to the connection, or kept for the
   * next one while there is none; it waits while the replay buffer is full.
   */
  sendFrame(
    kind: FrameKind,
    payload: string | Buffer,
    binary: boolean,
    id?: string,
  ): Promise<void> {
    if (this.ended || this.closing) {
      return Promise.reject(this.closedError('send'));
    }
    const replay = this.replay;
    const line = header(kind, replay ? replay.last + 1 : 0, id);
    const frame =
      typeof payload === 'string'
        ? line + payload
        : Buffer.concat([Buffer.from(line, 'latin1'), payload]);
    const transport = this.transport;
    if (!replay) {
      return transport
        ? transport.send(frame, binary, true)
        : Promise.reject(this.closedError('send'));
    }
    replay.push(frame, binary);
    let sent = transport?.send(frame, binary, true) ?? SENT;
    if (sent !== SENT) {
      sent = sent.then(undefined, () => {
        // a connection that dropped leaves the frame to the next one; an end does not
        if (this.ended || this.closing) throw this.closedError('send');
      });
    }
    if (!replay.full) return sent;
    // waits for the client's acks: as for a slow peer
    this.settings.metrics?.backpressure();
    const room = replay.whenRoom();
    this.awaitAcks();
    return Promise.all([sent, room]).then(() => undefined);
  }

  send(payload: string | Buffer, binary: boolean, fin: boolean): Promise<void> {
    if (!fin) return Promise.reject(new TypeError(FRAGMENTS_IN_ENVELOPE));
    return this.sendFrame(Frame.Message, payload, binary);
  }

  close(code: number, reason: string): void {
    if (this.ended) return;
    this.closing ??= disconnectOf(code, reason);
    // what the client sent is acked first: a client that goes on in a new session (after a
    // restart) then sends again only what we did not get
    if (this.acks.pending) this.acks.flush();
    if (this.transport) this.transport.close(code, reason);
    else this.finish(disconnectOf(code, reason));
  }

  end(code: number, reason: string): void {
    if (this.ended || this.closing) return;
    this.closing = disconnectOf(code, reason);
    this.observer.transportEnding(this.closing);
    this.close(code, reason);
  }

  terminate(): void {
    if (this.ended) return;
    this.closing ??= disconnectOf(CloseCode.Abnormal);
    if (this.transport) this.transport.terminate();
    else this.finish(disconnectOf(CloseCode.Abnormal));
  }

  regulate(messages: number, bytes: number): void {
    this.transport?.regulate(messages, bytes);
  }

  /** One frame from the client, decoded; a frame that breaks the envelope closes with 1002. */
  frame(transport: WsTransport, data: Buffer, isBinary: boolean): void {
    if (transport !== this.transport) return;
    if (!this.heard) {
      // it has read this connection's welcome: only its token resumes from now on
      this.heard = true;
      this.confirmedSecret = this.issuedSecrets.at(-1);
      this.issuedSecrets = [];
    }
    const newline = data.indexOf(10);
    const parsed =
      newline >= 0 && newline < MAX_HEADER
        ? parseHeader(data.toString('latin1', 0, newline))
        : undefined;
    switch (parsed?.kind) {
      case Frame.Message:
      case Frame.Request:
        if (!this.inOrder(parsed.seq, data.length)) return;
        this.inbound.push(
          new WebSocketMessage(
            data.subarray(newline + 1),
            isBinary ? 'binary' : 'text',
            parsed.id,
          ),
        );
        return;
      case Frame.Ack:
        if (this.replay && parsed.seq <= this.replay.last) {
          this.replay.acked(parsed.seq);
          if (!this.replay.waiting) this.stopAwaitingAcks();
          return;
        }
        break;
      case Frame.Ping:
        this.write(transport, PONG);
        return;
    }
    logger.debug(INVALID_ENVELOPE);
    this.end(CloseCode.ProtocolError, INVALID_ENVELOPE);
  }

  /**
   * Whether a message numbered `seq` is the next one: one the session has is dropped (the client
   * sent it again after a drop) and acked again; one beyond the next breaks the envelope.
   */
  private inOrder(seq: number, bytes: number): boolean {
    if (!this.replay) {
      if (seq === 0) return true;
    } else if (seq === this.received + 1) {
      this.received = seq;
      this.acks.received(bytes);
      return true;
    } else if (seq > 0 && seq <= this.received) {
      this.acks.received(0);
      return false;
    }
    logger.debug(INVALID_ENVELOPE);
    this.end(CloseCode.ProtocolError, INVALID_ENVELOPE);
    return false;
  }

  /** Writes a frame of our own; one the connection cannot take is for the next connection. */
  private write(
    transport: WsTransport,
    frame: string | Buffer,
    binary = false,
  ): void {
    transport.send(frame, binary, true).catch(ignore);
  }

  /** The current connection started to end on the server's account. @internal */
  transportEnding(transport: WsTransport, reason: WebSocketDisconnect): void {
    if (transport !== this.transport) return;
    this.closing ??= reason;
    this.observer.transportEnding(reason);
  }

  /** A connection closed; only the current one's close is the session's news. @internal */
  transportClosed(
    transport: WsTransport,
    disconnect: WebSocketDisconnect,
  ): void {
    if (transport !== this.transport) return;
    this.transport = undefined;
    this.dropped(disconnect);
  }

  /**
   * The connection closed. A reliable session whose connection dropped (no close frame, and no
   * end the server started) waits for its client for `resumeWindow`; any other close ends it.
   */
  private dropped(disconnect: WebSocketDisconnect): void {
    const { reliable } = this.envelope;
    if (!reliable || this.closing || disconnect.code !== CloseCode.Abnormal) {
      return this.finish(disconnect);
    }
    this.acks.cancel();
    this.stopAwaitingAcks();
    this.expiry = setTimeout(
      () => this.finish(disconnectOf(CloseCode.Abnormal, '', SESSION_EXPIRED)),
      reliable.resumeWindow,
    ).unref();
  }

  private finish(disconnect: WebSocketDisconnect): void {
    if (this.ended) return;
    this.ended = disconnect;
    this.acks.cancel();
    this.stopAwaitingAcks();
    clearTimeout(this.expiry);
    this.envelope.reliable?.sessions.remove(this);
    this.replay?.close(this.closedError('send'));
    this.inbound.end(() => this.closedError('receive'));
    this.observer.transportClosed(disconnect);
  }

  private closedError(action: string): WebSocketDisconnect {
    const { code, reason } = this.ended ?? this.closing ?? ABORTED;
    return disconnectOf(
      code,
      reason,
      this.ended ? SOCKET_CLOSED(action, code) : CLOSE_SENT(action, code),
    );
  }
}

/** Tells the link which of its connections an event is about. */
class ConnectionObserver implements TransportObserver {
  transport?: WsTransport;

  constructor(private readonly link: EnvelopeLink) {}

  transportEnding(reason: WebSocketDisconnect): void {
    if (this.transport) this.link.transportEnding(this.transport, reason);
  }

  transportClosed(disconnect: WebSocketDisconnect): void {
    if (this.transport) this.link.transportClosed(this.transport, disconnect);
  }
}

const ABORTED = { code: CloseCode.Abnormal, reason: '' };
function ignore(): void {}
