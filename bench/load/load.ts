// The load generator, in its own process: it opens connections and drives closed loops (send,
// await the reply, send again) on the harness's orders, and reports what it measured; for the
// reliable-mode benchmark it also holds sessions, drops them and resumes them.
import WebSocket from 'ws';
import { ackFrames, EnvelopeConnection } from './envelope-connection';
import { frame, LeanConnection } from './lean-client';

/** 'envelope': reliable mode's (bench/load/envelope-connection.ts), for the echo. */
export type Protocol = 'ws' | 'socketio' | 'envelope';

export type LoadCommand =
  | {
      cmd: 'echo';
      port: number;
      path: string;
      connections: number;
      message: string;
      protocol: Protocol;
      client: 'lean' | 'ws';
    }
  | { cmd: 'mark' }
  | { cmd: 'report' }
  | {
      cmd: 'idle';
      port: number;
      path: string;
      connections: number;
      protocol: Protocol;
    }
  | { cmd: 'close' }
  | {
      cmd: 'handshakes';
      port: number;
      path: string;
      count: number;
      inFlight: number;
      headers: Record<string, string>;
      protocol: Protocol;
    }
  | {
      /** Opens reliable sessions, each once it has its welcome and `messages` messages. */
      cmd: 'sessions';
      port: number;
      path: string;
      connections: number;
      messages: number;
      acks: boolean;
    }
  /** Drops the sessions' connections, without a close frame. */
  | { cmd: 'drop' }
  | {
      /** Resumes the first of the dropped sessions: ms until the welcome and the `count`th message. */
      cmd: 'resume';
      port: number;
      path: string;
      count: number;
    };

const MAX_SAMPLES = 4_000_000;
const latencies = new Float64Array(MAX_SAMPLES);
let samples = 0;
let messages = 0;
let running = false;
let markedAt = 0;
let markedCpu = process.cpuUsage();
let open: { close(): void }[] = [];
/** The reliable sessions of the last 'sessions' order. */
let sessions: EnvelopeConnection[] = [];

/** Opens `count` connections with at most `inFlight` handshakes under way. */
async function openMany<T>(
  count: number,
  inFlight: number,
  open: () => Promise<T>,
): Promise<T[]> {
  const opened: T[] = [];
  let started = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, count) }, async () => {
      while (started++ < count) opened.push(await open());
    }),
  );
  return opened;
}

const PONG = frame('3');

/** Socket.IO pings with '2' and wants '3', or drops the connection; a ping is not a reply. */
function answeredPing(connection: LeanConnection, payload: Buffer): boolean {
  if (payload.length !== 1 || payload[0] !== 0x32) return false;
  connection.send(PONG);
  return true;
}

/**
 * Completes the Socket.IO handshake on an open WebSocket: open packet, namespace connect. Then
 * answers pings, as an idle connection must to stay open.
 */
function socketIoReady(connection: LeanConnection): Promise<void> {
  return new Promise((resolve) => {
    connection.onText = (payload) => {
      const text = payload.toString();
      if (text.startsWith('0')) connection.send(frame('40'));
      else if (text.startsWith('40')) {
        connection.onText = (ping) => void answeredPing(connection, ping);
        resolve();
      }
    };
  });
}

async function openLean(
  port: number,
  path: string,
  protocol: Protocol,
  headers = {},
) {
  const target =
    protocol === 'socketio' ? '/socket.io/?EIO=4&transport=websocket' : path;
  const connection = await LeanConnection.open(port, target, headers);
  if (protocol === 'socketio') await socketIoReady(connection);
  return connection;
}

function record(sentAt: number): void {
  messages++;
  if (samples < MAX_SAMPLES) latencies[samples++] = performance.now() - sentAt;
}

async function echo(
  command: Extract<LoadCommand, { cmd: 'echo' }>,
): Promise<void> {
  const { port, path, connections, message, protocol, client } = command;
  running = true;
  if (client === 'ws') {
    const sockets = await openMany(connections, 100, () => openWs(port, path));
    open = sockets;
    for (const ws of sockets) {
      let sentAt = 0;
      ws.on('message', () => {
        record(sentAt);
        if (!running) return;
        sentAt = performance.now();
        ws.send(message);
      });
      sentAt = performance.now();
      ws.send(message);
    }
    return;
  }
  if (protocol === 'envelope') {
    const body = Buffer.from(message);
    const clients = await openMany(connections, 100, () =>
      EnvelopeConnection.open(port, path),
    );
    open = clients;
    for (const client of clients) {
      let sentAt = 0;
      client.onMessage = () => {
        record(sentAt);
        if (!running) return;
        sentAt = performance.now();
        client.send(body);
      };
      sentAt = performance.now();
      client.send(body);
    }
    return;
  }
  const payload = frame(message);
  const lean = await openMany(connections, 100, () =>
    openLean(port, path, protocol),
  );
  open = lean;
  for (const connection of lean) {
    let sentAt = 0;
    connection.onText = (reply) => {
      if (protocol === 'socketio' && answeredPing(connection, reply)) return;
      record(sentAt);
      if (!running) return;
      sentAt = performance.now();
      connection.send(payload);
    };
    sentAt = performance.now();
    connection.send(payload);
  }
}

/** Opens a session and resolves once `messages` of the server's have arrived. */
async function openSession(
  port: number,
  path: string,
  messages: number,
  acks: boolean,
): Promise<EnvelopeConnection> {
  let arrived!: () => void;
  const all = new Promise<void>((resolve) => (arrived = resolve));
  let count = 0;
  const session = await EnvelopeConnection.open(port, path, {
    acks,
    onMessage: () => {
      if (++count === messages) arrived();
    },
  });
  if (messages > 0) await all;
  return session;
}

/** Resumes `session`: ms from the reconnect to the welcome, and to the `count`th message. */
async function resume(
  port: number,
  path: string,
  session: EnvelopeConnection,
  count: number,
): Promise<{ welcomeMs: number; ms: number }> {
  let arrived!: () => void;
  const all = new Promise<void>((resolve) => (arrived = resolve));
  let received = 0;
  let lastAt = NaN;
  const started = performance.now();
  const resumed = await EnvelopeConnection.open(port, path, {
    resume: session,
    onMessage: () => {
      if (++received !== count) return;
      lastAt = performance.now();
      arrived();
    },
  });
  if (count > 0) await all;
  resumed.close();
  return { welcomeMs: resumed.welcomedAt - started, ms: lastAt - started };
}

function openWs(port: number, path: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, {
      perMessageDeflate: false,
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length
    ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
    : NaN;
}

async function handle(command: LoadCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'echo':
      await echo(command);
      return { running: true };
    case 'mark':
      samples = 0;
      messages = 0;
      markedAt = performance.now();
      markedCpu = process.cpuUsage();
      ackFrames.sent = ackFrames.received = 0;
      return { marked: true };
    case 'report': {
      const seconds = (performance.now() - markedAt) / 1000;
      const cpu = process.cpuUsage(markedCpu);
      const counted = messages;
      running = false;
      const sorted = latencies.slice(0, samples).sort();
      for (const connection of open) connection.close();
      open = [];
      return {
        messages: counted,
        seconds,
        p50: percentile(sorted, 0.5),
        p99: percentile(sorted, 0.99),
        p999: percentile(sorted, 0.999),
        clientCpuUs: cpu.user + cpu.system,
        acksSent: ackFrames.sent,
        acksReceived: ackFrames.received,
      };
    }
    case 'idle': {
      const { port, path, connections, protocol } = command;
      open = await openMany(connections, 100, () =>
        openLean(port, path, protocol),
      );
      return { opened: open.length };
    }
    case 'close':
      for (const connection of open) connection.close();
      open = [];
      return { closed: true };
    case 'handshakes': {
      const { port, path, count, inFlight, headers, protocol } = command;
      const started = performance.now();
      await openMany(count, inFlight, async () =>
        (await openLean(port, path, protocol, headers)).close(),
      );
      return { seconds: (performance.now() - started) / 1000 };
    }
    case 'sessions': {
      const { port, path, connections, messages, acks } = command;
      sessions = await openMany(connections, 100, () =>
        openSession(port, path, messages, acks),
      );
      return { opened: sessions.length };
    }
    case 'drop':
      for (const session of sessions) session.drop();
      return { dropped: sessions.length };
    case 'resume': {
      const [session] = sessions;
      if (!session) throw new Error('No session to resume');
      sessions = [];
      return resume(command.port, command.path, session, command.count);
    }
  }
}

process.on('message', (command: LoadCommand & { id: number }) => {
  handle(command).then(
    (result) => process.send!({ id: command.id, result }),
    (error: Error) => process.send!({ id: command.id, error: error.message }),
  );
});
process.send!({ ready: true });
