import { DataPointType } from '@opentelemetry/sdk-metrics';
import { GlobalMeterProvider } from '../../../test/utils/otel-metrics';
import { WS_METER_NAME, WsMetrics } from './ws-metrics';

const ROUTE = { 'http.route': '/chat/:room' };
const RECEIVED = { ...ROUTE, 'network.io.direction': 'receive' };
const SENT = { ...ROUTE, 'network.io.direction': 'transmit' };

/** Two sessions of `/chat/:room`, one closed, their traffic, and what groups/ and reliable/ report. */
function record(wsMetrics: WsMetrics): void {
  wsMetrics.sessionOpened('/chat/:room');
  wsMetrics.sessionOpened('/chat/:room');
  wsMetrics.sessionOpened('/feed');
  wsMetrics.messageIn('/chat/:room', 5);
  wsMetrics.messageIn('/chat/:room', 7);
  wsMetrics.messageOut('/chat/:room', 10);
  // a message sent in two fragments: one message, its bytes all
  wsMetrics.messageOut('/chat/:room', 4, false);
  wsMetrics.messageOut('/chat/:room', 6);
  wsMetrics.backpressure('/chat/:room');
  wsMetrics.resumed('/chat/:room');
  wsMetrics.sessionClosed('/chat/:room', 1000);
  wsMetrics.sessionClosed('/feed', 4001);
  wsMetrics.broadcast();
  wsMetrics.delivered(3);
  wsMetrics.broadcast();
  wsMetrics.delivered(2);
  wsMetrics.recovery(true);
  wsMetrics.recovery(false);
  wsMetrics.recovery(false);
}

describe('WsMetrics', () => {
  it('counts in snapshot() with no OpenTelemetry SDK registered', () => {
    const wsMetrics = new WsMetrics();
    record(wsMetrics);
    const snapshot = wsMetrics.snapshot();
    expect(snapshot).toEqual({
      at: expect.any(String),
      sessions: {
        open: 1,
        total: 3,
        byEndpoint: {
          '/chat/:room': { open: 1, total: 2 },
          '/feed': { open: 0, total: 1 },
        },
      },
      messagesIn: 2,
      messagesOut: 2,
      bytesIn: 12,
      bytesOut: 20,
      closes: { '1000': 1, '4001': 1 },
      backpressure: 1,
      broadcasts: 2,
      fanout: 5,
      resumes: 1,
      recoveries: { ok: 1, failed: 2 },
    });
    expect(new Date(snapshot.at).toISOString()).toBe(snapshot.at);
  });

  describe('with an OpenTelemetry SDK registered', () => {
    let provider: GlobalMeterProvider;
    let wsMetrics: WsMetrics;

    beforeEach(() => {
      provider = new GlobalMeterProvider();
      wsMetrics = new WsMetrics();
    });

    afterEach(() => provider.close());

    it('reports the same counts through its instruments, with their units', async () => {
      record(wsMetrics);
      const collected = await provider.collect(WS_METER_NAME);
      expect(collected.version).toBe(
        (require('../../../package.json') as { version: string }).version,
      );
      expect(collected.points('websocket.server.session.active')).toEqual([
        { attributes: ROUTE, value: 1 },
        { attributes: { 'http.route': '/feed' }, value: 0 },
      ]);
      expect(collected.value('websocket.server.session.opened', ROUTE)).toBe(2);
      expect(collected.points('websocket.server.session.closed')).toEqual([
        { attributes: { ...ROUTE, 'websocket.close.code': 1000 }, value: 1 },
        {
          attributes: { 'http.route': '/feed', 'websocket.close.code': 4001 },
          value: 1,
        },
      ]);
      expect(collected.value('websocket.server.messages', RECEIVED)).toBe(2);
      expect(collected.value('websocket.server.messages', SENT)).toBe(2);
      expect(collected.value('websocket.server.io', RECEIVED)).toBe(12);
      expect(collected.value('websocket.server.io', SENT)).toBe(20);
      expect(collected.value('websocket.server.backpressure', ROUTE)).toBe(1);
      expect(collected.value('websocket.server.session.resumes', ROUTE)).toBe(
        1,
      );
      expect(collected.value('websocket.server.broadcasts')).toBe(2);
      expect(collected.value('websocket.server.broadcast.deliveries')).toBe(5);
      expect(collected.points('websocket.server.session.recoveries')).toEqual([
        { attributes: { 'websocket.recovery.result': 'ok' }, value: 1 },
        { attributes: { 'websocket.recovery.result': 'failed' }, value: 2 },
      ]);
    });

    it('makes the open sessions an UpDownCounter and every other count a monotonic Counter, with UCUM units', async () => {
      record(wsMetrics);
      const collected = await provider.collect(WS_METER_NAME);
      const kinds = Object.fromEntries(
        [
          'websocket.server.session.active',
          'websocket.server.session.opened',
          'websocket.server.session.closed',
          'websocket.server.messages',
          'websocket.server.io',
          'websocket.server.backpressure',
          'websocket.server.session.resumes',
          'websocket.server.broadcasts',
          'websocket.server.broadcast.deliveries',
          'websocket.server.session.recoveries',
        ].map((name) => {
          const metric = collected.metric(name);
          const monotonic =
            metric.dataPointType === DataPointType.SUM && metric.isMonotonic;
          return [name, `${metric.descriptor.unit} ${monotonic}`];
        }),
      );
      expect(kinds).toEqual({
        'websocket.server.session.active': '{session} false',
        'websocket.server.session.opened': '{session} true',
        'websocket.server.session.closed': '{session} true',
        'websocket.server.messages': '{message} true',
        'websocket.server.io': 'By true',
        'websocket.server.backpressure': '{send} true',
        'websocket.server.session.resumes': '{resume} true',
        'websocket.server.broadcasts': '{broadcast} true',
        'websocket.server.broadcast.deliveries': '{message} true',
        'websocket.server.session.recoveries': '{recovery} true',
      });
    });

    it('reports an endpoint from its first use, with zeros', async () => {
      wsMetrics.endpoint('/idle');
      const collected = await provider.collect(WS_METER_NAME);
      const idle = { 'http.route': '/idle' };
      expect(collected.points('websocket.server.session.active')).toEqual([
        { attributes: idle, value: 0 },
      ]);
      expect(collected.points('websocket.server.messages')).toEqual([
        {
          attributes: { ...idle, 'network.io.direction': 'receive' },
          value: 0,
        },
        {
          attributes: { ...idle, 'network.io.direction': 'transmit' },
          value: 0,
        },
      ]);
    });
  });
});
