import type { Attributes } from '@opentelemetry/api';
import { ATTR_HTTP_ROUTE, ATTR_NETWORK_IO_DIRECTION } from './ws-instruments';

/**
 * One endpoint's counters, plain numbers that `WsMetrics` reads when it is asked (a snapshot,
 * or an OpenTelemetry collection), and its attribute sets, made once. What the hot path calls
 * is an increment: no allocation, no lookup, no call into OpenTelemetry. The library counts
 * through it; applications read `WsMetrics.snapshot()`.
 * @example settings.metrics?.messageIn(data.length);
 */
export class EndpointMetrics {
  /** `{ 'http.route': endpoint }`. */
  readonly attributes: Attributes;
  /** The attributes of what was received: with `network.io.direction: 'receive'`. */
  readonly received: Attributes;
  /** The attributes of what was sent: with `network.io.direction: 'transmit'`. */
  readonly sent: Attributes;

  /** Sessions open now. */
  open = 0;
  /** Sessions opened since the start. */
  opened = 0;
  messagesIn = 0;
  messagesOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Sends that waited for the peer to read. */
  waits = 0;
  resumes = 0;
  /** Sessions ended, by close code. */
  readonly closes = new Map<number, number>();

  constructor(
    /** The endpoint's route path, as the HTTP adapter registers it: `/chat/rooms/:room`. */
    readonly endpoint: string,
  ) {
    this.attributes = Object.freeze({ [ATTR_HTTP_ROUTE]: endpoint });
    this.received = Object.freeze({
      [ATTR_HTTP_ROUTE]: endpoint,
      [ATTR_NETWORK_IO_DIRECTION]: 'receive',
    });
    this.sent = Object.freeze({
      [ATTR_HTTP_ROUTE]: endpoint,
      [ATTR_NETWORK_IO_DIRECTION]: 'transmit',
    });
  }

  /** A session's handshake completed. */
  sessionOpened(): void {
    this.open++;
    this.opened++;
  }

  /** A session ended (in reliable mode, once it can no longer be resumed) with `code`. */
  sessionClosed(code: number): void {
    this.open--;
    this.closes.set(code, (this.closes.get(code) ?? 0) + 1);
  }

  /** A message of `bytes` bytes (its payload, after decompression) was received. */
  messageIn(bytes: number): void {
    this.messagesIn++;
    this.bytesIn += bytes;
  }

  /**
   * A frame of `bytes` bytes (its payload, before compression) was handed to the socket; with
   * `fin`, it ends a message. A message sent in fragments counts once, its bytes all.
   */
  messageOut(bytes: number, fin = true): void {
    if (fin) this.messagesOut++;
    this.bytesOut += bytes;
  }

  /** A send found more than `sendHighWaterMark` bytes waiting for the peer, and waited. */
  backpressure(): void {
    this.waits++;
  }

  /** A reliable session continued on a new connection. */
  resumed(): void {
    this.resumes++;
  }
}
