/**
 * What `WsMetrics.snapshot()` returns: every count is since the app started, but `open`.
 * @example const { sessions, closes } = wsMetrics.snapshot(); // sessions.open, closes['1006']
 * @publicApi
 */
export interface WsMetricsSnapshot {
  /** When it was taken (ISO 8601). */
  at: string;
  sessions: {
    /** Sessions open now. */
    open: number;
    /** Sessions opened. */
    total: number;
    /** The same, by endpoint route path (`/chat/rooms/:room`). */
    byEndpoint: Record<string, { open: number; total: number }>;
  };
  /** WebSocket messages received (in reliable or requests mode, envelope frames, acks included). */
  messagesIn: number;
  /** WebSocket messages sent, broadcast deliveries included. */
  messagesOut: number;
  /** Payload bytes received, after decompression. */
  bytesIn: number;
  /** Payload bytes sent, before compression. */
  bytesOut: number;
  /** Sessions ended, by close code (`{ "1000": 12, "1006": 1 }`). */
  closes: Record<string, number>;
  /** Sends that waited because more than `sendHighWaterMark` bytes waited for the peer. */
  backpressure: number;
  /** Broadcasts sent from this instance (`send()` calls). */
  broadcasts: number;
  /** Messages that broadcasts, from any instance, handed to this instance's sessions. */
  fanout: number;
  /** Times a reliable session continued on a new connection. */
  resumes: number;
  /** Sessions recovered, and those that could not be. */
  recoveries: { ok: number; failed: number };
}
