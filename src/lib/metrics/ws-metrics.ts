import { Injectable } from '@nestjs/common';
import {
  type BatchObservableResult,
  type Meter,
  metrics,
} from '@opentelemetry/api';
import { EndpointMetrics } from './endpoint-metrics';
import {
  ATTR_CLOSE_CODE,
  createInstruments,
  RECOVERED,
  UNRECOVERED,
} from './ws-instruments';
import type { WsMetricsSnapshot } from './ws-metrics-snapshot';

/** The name of the OpenTelemetry meter (its instrumentation scope). */
export const WS_METER_NAME = 'nestjs-ws-endpoints';

/**
 * Counts what the WebSocket endpoints do: sessions (open now, opened, ended by close code),
 * messages and bytes each way, sends that waited for a slow peer, broadcasts and their fan-out,
 * resumes and recoveries. The counts are plain numbers in the process: `snapshot()` returns them
 * (for a dashboard), and OpenTelemetry reads them through observable instruments of the meter
 * `nestjs-ws-endpoints` when it collects, so the hot path never calls into OpenTelemetry. Without
 * an SDK `@opentelemetry/api` is a no-op; an app that registers one (a `MeterProvider`, with
 * OpenTelemetry's Prometheus exporter for instance) must do so before it creates the Nest app,
 * as the meter is taken when the module is instantiated.
 *
 * A session counts as open from its handshake until its connection closes (in reliable mode,
 * until it can no longer be resumed), and its close code is the one its connection ended with
 * (1006 when it dropped). Messages are WebSocket messages (on a `reliable` or `requests`
 * endpoint, the envelope's frames, acks included) and bytes are their payloads (after
 * decompression, before compression). Each endpoint is counted under its route path, as the
 * HTTP adapter registers it (`/chat/rooms/:room`); one on several paths, under them joined by
 * ` | `.
 *
 * The instruments. `http.route` and `network.io.direction` are OpenTelemetry semantic
 * conventions; OpenTelemetry has none for WebSocket, so every `websocket.*` name is ours, made
 * after its naming guidance and the `system.network.*` metrics (`system.network.io`, `.packets`):
 * - `websocket.server.session.active` (UpDownCounter, `{session}`; `http.route`)
 * - `websocket.server.session.opened` (Counter, `{session}`; `http.route`)
 * - `websocket.server.session.closed` (Counter, `{session}`; `http.route`, `websocket.close.code`)
 * - `websocket.server.messages` (Counter, `{message}`; `http.route`, `network.io.direction`)
 * - `websocket.server.io` (Counter, `By`; `http.route`, `network.io.direction`)
 * - `websocket.server.backpressure` (Counter, `{send}`; `http.route`): sends that waited
 * - `websocket.server.session.resumes` (Counter, `{resume}`; `http.route`)
 * - `websocket.server.broadcasts` (Counter, `{broadcast}`)
 * - `websocket.server.broadcast.deliveries` (Counter, `{message}`): the broadcasts' fan-out
 * - `websocket.server.session.recoveries` (Counter, `{recovery}`; `websocket.recovery.result`:
 *   `ok` | `failed`)
 *
 * @example
 * @Controller('metrics')
 * export class MetricsController {
 *   constructor(private readonly wsMetrics: WsMetrics) {}
 *
 *   @Get() snapshot(): WsMetricsSnapshot {
 *     return this.wsMetrics.snapshot();
 *   }
 * }
 * @publicApi
 */
@Injectable()
export class WsMetrics {
  private readonly endpoints = new Map<string, EndpointMetrics>();
  private broadcasts = 0;
  private deliveries = 0;
  private recovered = 0;
  private unrecovered = 0;
  private readonly meter: Meter = metrics.getMeter(
    WS_METER_NAME,
    packageVersion(),
  );
  private readonly instruments = createInstruments(this.meter);

  constructor() {
    // never removed: the SDK's last collection, at its shutdown, comes after the app's, whose
    // drain closed every session
    this.meter.addBatchObservableCallback(
      this.observe,
      Object.values(this.instruments),
    );
  }

  /** What the endpoints have done so far. */
  snapshot(): WsMetricsSnapshot {
    const snapshot: WsMetricsSnapshot = {
      at: new Date().toISOString(),
      sessions: { open: 0, total: 0, byEndpoint: {} },
      messagesIn: 0,
      messagesOut: 0,
      bytesIn: 0,
      bytesOut: 0,
      closes: {},
      backpressure: 0,
      broadcasts: this.broadcasts,
      fanout: this.deliveries,
      resumes: 0,
      recoveries: { ok: this.recovered, failed: this.unrecovered },
    };
    const { sessions, closes } = snapshot;
    for (const counts of this.endpoints.values()) {
      sessions.open += counts.open;
      sessions.total += counts.opened;
      sessions.byEndpoint[counts.endpoint] = {
        open: counts.open,
        total: counts.opened,
      };
      snapshot.messagesIn += counts.messagesIn;
      snapshot.messagesOut += counts.messagesOut;
      snapshot.bytesIn += counts.bytesIn;
      snapshot.bytesOut += counts.bytesOut;
      snapshot.backpressure += counts.waits;
      snapshot.resumes += counts.resumes;
      for (const [code, count] of counts.closes) {
        closes[code] = (closes[code] ?? 0) + count;
      }
    }
    return snapshot;
  }

  /**
   * The counters of the endpoint on `path`, made on first use; it is reported (with zeros) from
   * then on. @internal
   */
  endpoint(path: string): EndpointMetrics {
    let counts = this.endpoints.get(path);
    if (!counts) this.endpoints.set(path, (counts = new EndpointMetrics(path)));
    return counts;
  }

  /** A session's handshake on `endpoint` completed. @internal */
  sessionOpened(endpoint: string): void {
    this.endpoint(endpoint).sessionOpened();
  }

  /** A session on `endpoint` ended with `code`. @internal */
  sessionClosed(endpoint: string, code: number): void {
    this.endpoint(endpoint).sessionClosed(code);
  }

  /** A message of `bytes` payload bytes was received on `endpoint`. @internal */
  messageIn(endpoint: string, bytes: number): void {
    this.endpoint(endpoint).messageIn(bytes);
  }

  /** A frame of `bytes` payload bytes was sent on `endpoint`; `fin` ends a message. @internal */
  messageOut(endpoint: string, bytes: number, fin = true): void {
    this.endpoint(endpoint).messageOut(bytes, fin);
  }

  /** A send on `endpoint` waited for its peer to read. @internal */
  backpressure(endpoint: string): void {
    this.endpoint(endpoint).backpressure();
  }

  /** A reliable session on `endpoint` continued on a new connection. @internal */
  resumed(endpoint: string): void {
    this.endpoint(endpoint).resumed();
  }

  /** A broadcast was sent from this instance (`send()`). @internal */
  broadcast(): void {
    this.broadcasts++;
  }

  /** A broadcast, from any instance, was handed to `count` sessions of this one. @internal */
  delivered(count: number): void {
    this.deliveries += count;
  }

  /** A session was recovered (`ok`), or could not be. @internal */
  recovery(ok: boolean): void {
    if (ok) this.recovered++;
    else this.unrecovered++;
  }

  /** OpenTelemetry collects: every count as it is now. */
  private readonly observe = (result: BatchObservableResult): void => {
    const { instruments } = this;
    for (const counts of this.endpoints.values()) {
      const { attributes, received, sent } = counts;
      result.observe(instruments.active, counts.open, attributes);
      result.observe(instruments.opened, counts.opened, attributes);
      for (const [code, count] of counts.closes) {
        result.observe(instruments.closed, count, {
          ...attributes,
          [ATTR_CLOSE_CODE]: code,
        });
      }
      result.observe(instruments.messages, counts.messagesIn, received);
      result.observe(instruments.messages, counts.messagesOut, sent);
      result.observe(instruments.io, counts.bytesIn, received);
      result.observe(instruments.io, counts.bytesOut, sent);
      result.observe(instruments.backpressure, counts.waits, attributes);
      result.observe(instruments.resumes, counts.resumes, attributes);
    }
    result.observe(instruments.broadcasts, this.broadcasts);
    result.observe(instruments.deliveries, this.deliveries);
    result.observe(instruments.recoveries, this.recovered, RECOVERED);
    result.observe(instruments.recoveries, this.unrecovered, UNRECOVERED);
  };
}

/** The package's version, the meter's; read as it is installed, beside `dist/lib/metrics`. */
function packageVersion(): string | undefined {
  try {
    return (require('../../../package.json') as { version?: string }).version;
  } catch {
    return undefined;
  }
}
