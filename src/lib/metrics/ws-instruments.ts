import { type Attributes, type Meter, ValueType } from '@opentelemetry/api';

/** `http.route`: an OpenTelemetry semantic convention (the matched route template). */
export const ATTR_HTTP_ROUTE = 'http.route';
/** `network.io.direction` (`receive` | `transmit`): an OpenTelemetry semantic convention. */
export const ATTR_NETWORK_IO_DIRECTION = 'network.io.direction';
/** `websocket.close.code`: ours (OpenTelemetry has no WebSocket conventions). */
export const ATTR_CLOSE_CODE = 'websocket.close.code';
/** `websocket.recovery.result` (`ok` | `failed`): ours. */
export const ATTR_RECOVERY_RESULT = 'websocket.recovery.result';
export const RECOVERED: Attributes = Object.freeze({
  [ATTR_RECOVERY_RESULT]: 'ok',
});
export const UNRECOVERED: Attributes = Object.freeze({
  [ATTR_RECOVERY_RESULT]: 'failed',
});

/** The instruments of `WsMetrics`, all observable: OpenTelemetry reads the counts when it collects. */
export type WsInstruments = ReturnType<typeof createInstruments>;

/** Creates the instruments on `meter`; `WsMetrics`'s JSDoc lists them, with their attributes. */
export function createInstruments(meter: Meter) {
  return {
    active: meter.createObservableUpDownCounter(
      'websocket.server.session.active',
      instrument('{session}', 'WebSocket sessions open now.'),
    ),
    opened: meter.createObservableCounter(
      'websocket.server.session.opened',
      instrument('{session}', 'WebSocket sessions opened.'),
    ),
    closed: meter.createObservableCounter(
      'websocket.server.session.closed',
      instrument('{session}', 'WebSocket sessions ended, by close code.'),
    ),
    messages: meter.createObservableCounter(
      'websocket.server.messages',
      instrument('{message}', 'WebSocket messages received and sent.'),
    ),
    io: meter.createObservableCounter(
      'websocket.server.io',
      instrument('By', 'WebSocket payload bytes received and sent.'),
    ),
    backpressure: meter.createObservableCounter(
      'websocket.server.backpressure',
      instrument(
        '{send}',
        'Sends that waited for a peer to read what it had been sent.',
      ),
    ),
    resumes: meter.createObservableCounter(
      'websocket.server.session.resumes',
      instrument(
        '{resume}',
        'Reliable sessions continued on a new connection.',
      ),
    ),
    broadcasts: meter.createObservableCounter(
      'websocket.server.broadcasts',
      instrument('{broadcast}', 'Broadcasts made.'),
    ),
    deliveries: meter.createObservableCounter(
      'websocket.server.broadcast.deliveries',
      instrument('{message}', 'Messages delivered by broadcasts.'),
    ),
    recoveries: meter.createObservableCounter(
      'websocket.server.session.recoveries',
      instrument('{recovery}', 'Session recoveries, by result.'),
    ),
  };
}

function instrument(unit: string, description: string) {
  return { unit, description, valueType: ValueType.INT };
}
