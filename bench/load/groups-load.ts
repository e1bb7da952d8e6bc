// The groups benchmark's load generator (bench/groups.ts), in its own process: it holds many
// lean connections, counts the frames they receive, and runs broadcasts in a closed loop: the
// first connection sends a trigger, the server broadcasts to the group, and the next trigger
// goes once every connection has the broadcast.
import { frame, LeanConnection } from './lean-client';

export type GroupsLoadCommand =
  /** Opens `connections` more connections to `path`, 100 handshakes in flight. */
  | { cmd: 'open'; port: number; path: string; connections: number }
  /**
   * `count` broadcasts, one after the other: for each, ms from the trigger to the first
   * connection's copy, to half of them, and to the last.
   */
  | { cmd: 'broadcasts'; count: number }
  | { cmd: 'close' };

export interface BroadcastTimes {
  firstMs: number[];
  halfMs: number[];
  allMs: number[];
  /** The load generator's CPU time over the broadcasts, µs. */
  clientCpuUs: number;
  /** The length of the last message received, bytes. */
  payloadBytes: number;
}

const TRIGGER = frame('broadcast');
/** How long one broadcast may take to reach every connection before the run fails. */
const BROADCAST_TIMEOUT_MS = 30_000;

let connections: LeanConnection[] = [];
/** Connections of the current set that the server closed (a slow consumer, with 1013, say). */
let lost = 0;
/** Counts the sets of connections: a 'close' order ends one. */
let generation = 0;
let received = 0;
let payloadBytes = 0;
/** Called on each frame received while a broadcast is under way. */
let onFrame: () => void = () => undefined;

/** Opens `count` connections with at most `inFlight` handshakes under way. */
async function openMany(
  port: number,
  path: string,
  count: number,
  inFlight: number,
): Promise<LeanConnection[]> {
  const opened: LeanConnection[] = [];
  let started = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, count) }, async () => {
      while (started++ < count) {
        const connection = await LeanConnection.open(port, path);
        connection.onText = (payload) => {
          received++;
          payloadBytes = payload.length;
          onFrame();
        };
        const of = generation;
        connection.socket.once('close', () => {
          if (of === generation) lost++;
        });
        opened.push(connection);
      }
    }),
  );
  return opened;
}

/** One broadcast: the trigger, then the times of the first, the middle and the last copy. */
function broadcast(): Promise<[number, number, number]> {
  const expected = connections.length;
  const half = Math.ceil(expected / 2);
  received = 0;
  return new Promise((resolve, reject) => {
    let firstAt = NaN;
    let halfAt = NaN;
    const startedAt = performance.now();
    const timer = setTimeout(() => {
      onFrame = () => undefined;
      reject(
        new Error(
          `${received} of ${expected} connections had the broadcast after ${BROADCAST_TIMEOUT_MS} ms (${lost} closed)`,
        ),
      );
    }, BROADCAST_TIMEOUT_MS);
    onFrame = () => {
      if (received === 1) firstAt = performance.now();
      if (received === half) halfAt = performance.now();
      if (received < expected) return;
      const allAt = performance.now();
      clearTimeout(timer);
      onFrame = () => undefined;
      resolve([firstAt - startedAt, halfAt - startedAt, allAt - startedAt]);
    };
    connections[0].send(TRIGGER);
  });
}

async function handle(command: GroupsLoadCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'open': {
      const { port, path } = command;
      connections = connections.concat(
        await openMany(port, path, command.connections, 100),
      );
      return { open: connections.length };
    }
    case 'broadcasts': {
      if (!connections.length)
        throw new Error('No connections to broadcast to');
      const times: BroadcastTimes = {
        firstMs: [],
        halfMs: [],
        allMs: [],
        clientCpuUs: 0,
        payloadBytes: 0,
      };
      const cpu = process.cpuUsage();
      for (let i = 0; i < command.count; i++) {
        const [first, half, all] = await broadcast();
        times.firstMs.push(first);
        times.halfMs.push(half);
        times.allMs.push(all);
      }
      const used = process.cpuUsage(cpu);
      times.clientCpuUs = used.user + used.system;
      times.payloadBytes = payloadBytes;
      if (lost)
        throw new Error(`${lost} connections closed during the broadcasts`);
      return times;
    }
    case 'close':
      generation++;
      lost = 0;
      for (const connection of connections) connection.close();
      connections = [];
      return { closed: true };
  }
}

process.on('message', (command: GroupsLoadCommand & { id: number }) => {
  handle(command).then(
    (result) => process.send!({ id: command.id, result }),
    (error: Error) => process.send!({ id: command.id, error: error.message }),
  );
});
process.send!({ ready: true });
