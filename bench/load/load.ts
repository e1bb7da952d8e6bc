// The load generator, in its own process: it opens connections and drives closed loops (send,
// await the reply, send again) on the harness's orders, and reports what it measured.
import WebSocket from 'ws';
import { frame, LeanConnection } from './lean-client';

export type Protocol = 'ws' | 'socketio';

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
    };

const MAX_SAMPLES = 4_000_000;
const latencies = new Float64Array(MAX_SAMPLES);
let samples = 0;
let messages = 0;
let running = false;
let markedAt = 0;
let markedCpu = process.cpuUsage();
let open: { close(): void }[] = [];

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
  }
}

process.on('message', (command: LoadCommand & { id: number }) => {
  handle(command).then(
    (result) => process.send!({ id: command.id, result }),
    (error: Error) => process.send!({ id: command.id, error: error.message }),
  );
});
process.send!({ ready: true });
