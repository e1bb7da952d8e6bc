// Reliable mode, `@Ws(path, { reliable: true })`, against measurements of the same run (run.ts
// runs it after the other workloads; `npm run bench -- --workloads=reliable` alone): server CPU
// per echoed message against the same echo on a plain endpoint of the same process
// (bench/servers/reliable.ts) and against raw ws; the time to resume a session with 1,000
// messages to replay; the memory a suspended session holds; the size of the browser client.
// The load generator speaks the envelope with bench/load/envelope-connection.ts.
import { ACK_DELAY, ACK_EVERY } from '../src/lib/protocol/envelope';
import { join } from 'node:path';
import { setTimeout as wait } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { LoadCommand, Protocol } from './load/load';
import { fmt, median } from './stats';

/** A process of the harness (run.ts's `Child`): answers queries over IPC. */
export interface BenchProcess {
  readonly ready: Promise<unknown>;
  ask<T = any>(message: object, seconds?: number): Promise<T>;
  stop(): Promise<void>;
}

/**
 * One closed-loop echo run, as run.ts's `echoRun` measures it: msgsPerSec, p50, p99,
 * serverUsPerMsg, clientUsPerMsg.
 */
export type EchoRow = Record<string, number>;

/** What the harness lends the reliable-mode benchmark: its processes are `P`. */
export interface ReliableBench<P extends BenchProcess = BenchProcess> {
  quick: boolean;
  repeats: number;
  load: BenchProcess;
  /** Starts `bench/servers/<file>` on the server's core; `ready` resolves with its port. */
  start(file: string, nodeArgs?: string[]): P;
  /** A closed-loop echo of the harness's text message, warm-up then the measured window. */
  echo(
    server: P,
    port: number,
    path: string,
    connections: number,
    protocol: Protocol,
  ): Promise<EchoRow>;
  /** Progress, one line a run. */
  log(line: string): void;
}

/** The goals the table holds the figures against. */
const GOALS = { cpuRatio: 1.3, gzippedKiB: 6 };
/** Messages the handler sends while its client is away, replayed on the resume. */
const REPLAYED = 1_000;
/** The unacked messages each session holds in the memory run's second case (what /held sends). */
const HELD = { count: 10, bytes: 100 };
/**
 * Node's options in the memory run. V8 drops the bytecode of functions that have not run for a
 * few collections, and each measure collects: Nest's bootstrap code went between two measures,
 * and a thousand sessions seemed to cost less than nothing (-4 KiB each with 100 sessions).
 */
const MEMORY_NODE_ARGS = ['--no-flush-bytecode'];
/**
 * ms between the memory run's two collections of one measure: under Node 20, a dropped
 * connection's objects (some 14 KiB of heap each) outlived the first collection after its session
 * was suspended, and went in one after a turn of the event loop; measured at once, they counted
 * as the suspended session's.
 */
const SETTLE_MS = 100;

/** The three echoes of one connection count: raw ws, and the plain and reliable @Ws endpoints. */
const ECHOES = [
  { id: 'raw', label: 'a. raw ws', path: '/text' },
  { id: 'plain', label: 'b. @Ws plain', path: '/text' },
  { id: 'reliable', label: 'r. @Ws reliable', path: '/reliable' },
] as const;
type EchoId = (typeof ECHOES)[number]['id'];

/** Runs every part and returns its markdown and its JSON. */
export async function reliableBenchmark<P extends BenchProcess>(
  bench: ReliableBench<P>,
): Promise<{ markdown: string; json: object }> {
  const { quick } = bench;
  const settings = {
    connections: quick ? [50] : [50, 1000],
    resumeRuns: quick ? 3 : 7,
    sessions: quick ? 100 : 1000,
    warmupSessions: quick ? 20 : 100,
  };
  const servers = {
    raw: bench.start('raw-ws.js'),
    reliable: bench.start('reliable.js'),
  };
  const ports = {
    raw: (await servers.raw.ready) as number,
    reliable: (await servers.reliable.ready) as number,
  };
  const echo = await echoRuns(bench, settings.connections, servers, ports);
  await servers.raw.stop();
  const resume = await resumeRuns(
    bench,
    servers.reliable,
    ports.reliable,
    settings.resumeRuns,
  );
  await servers.reliable.stop();
  const memory = {
    empty: await memoryRun(bench, '/reliable', 0, settings),
    held: await memoryRun(bench, '/held', HELD.count, settings),
  };
  const client = await clientSize();
  const json = { settings, goals: GOALS, echo, resume, memory, client };
  return { markdown: report(bench, json), json };
}

// ---- server CPU per echoed message --------------------------------------------------------------

interface EchoResult {
  connections: number;
  rows: Record<EchoId, EchoRow[]>;
  /** Medians over the repeats of each repeat's ratio of server µs/msg. */
  reliableToPlain: number;
  reliableToRaw: number;
  plainToRaw: number;
}

/** Each repeat: every connection count, raw ws then plain then reliable, minutes apart at most. */
async function echoRuns<P extends BenchProcess>(
  bench: ReliableBench<P>,
  counts: number[],
  servers: Record<'raw' | 'reliable', P>,
  ports: Record<'raw' | 'reliable', number>,
): Promise<EchoResult[]> {
  const rows = counts.map(
    () => ({ raw: [], plain: [], reliable: [] }) as Record<EchoId, EchoRow[]>,
  );
  for (let repeat = 0; repeat < bench.repeats; repeat++) {
    for (const [index, connections] of counts.entries()) {
      for (const spec of ECHOES) {
        const which = spec.id === 'raw' ? 'raw' : 'reliable';
        const row = await bench.echo(
          servers[which],
          ports[which],
          spec.path,
          connections,
          spec.id === 'reliable' ? 'envelope' : 'ws',
        );
        rows[index][spec.id].push(row);
        bench.log(
          `reliable-echo-${connections} ${spec.id}: ${fmt(row.msgsPerSec, 0)} msgs/s, server ${fmt(row.serverUsPerMsg, 2)} µs/msg, client ${fmt(row.clientUsPerMsg, 2)} µs/msg`,
        );
      }
    }
  }
  const ratio = (of: EchoRow[], to: EchoRow[]) =>
    median(
      of.map((row, repeat) => row.serverUsPerMsg / to[repeat].serverUsPerMsg),
    );
  return counts.map((connections, index) => {
    const { raw, plain, reliable } = rows[index];
    return {
      connections,
      rows: rows[index],
      reliableToPlain: ratio(reliable, plain),
      reliableToRaw: ratio(reliable, raw),
      plainToRaw: ratio(plain, raw),
    };
  });
}

// ---- resume -------------------------------------------------------------------------------------

interface ResumeResult {
  messages: number;
  /** ms from the reconnect to the welcome, and to the last replayed message, run by run. */
  welcomeMs: number[];
  replayMs: number[];
  medianWelcomeMs: number;
  medianReplayMs: number;
}

/**
 * A session on /replay whose connection drops (no close frame); once the server has it
 * suspended, its handler sends REPLAYED messages; the client resumes, and times the reconnect to
 * the welcome and to the last of them. One unmeasured run first, which compiles the path.
 */
async function resumeRuns(
  bench: ReliableBench,
  server: BenchProcess,
  port: number,
  runs: number,
): Promise<ResumeResult> {
  const welcomeMs: number[] = [];
  const replayMs: number[] = [];
  for (let run = 0; run <= runs; run++) {
    await bench.load.ask({
      cmd: 'sessions',
      port,
      path: '/replay',
      connections: 1,
      messages: 0,
      acks: true,
    } satisfies LoadCommand);
    await bench.load.ask({ cmd: 'drop' } satisfies LoadCommand);
    await suspended(server, 1);
    await server.ask({ ask: 'burst', count: REPLAYED });
    const timed = await bench.load.ask<{ welcomeMs: number; ms: number }>({
      cmd: 'resume',
      port,
      path: '/replay',
      count: REPLAYED,
    } satisfies LoadCommand);
    if (run === 0) continue;
    welcomeMs.push(timed.welcomeMs);
    replayMs.push(timed.ms);
    bench.log(
      `reliable-resume run ${run}: welcome ${fmt(timed.welcomeMs, 2)} ms, ${REPLAYED} messages ${fmt(timed.ms, 2)} ms`,
    );
  }
  return {
    messages: REPLAYED,
    welcomeMs,
    replayMs,
    medianWelcomeMs: median(welcomeMs),
    medianReplayMs: median(replayMs),
  };
}

/** Resolves once `count` of the server's reliable sessions wait for their client. */
async function suspended(server: BenchProcess, count: number): Promise<void> {
  const deadline = performance.now() + 60_000;
  for (;;) {
    const states = await server.ask<Record<string, number>>({
      ask: 'sessions',
    });
    if ((states.reconnecting ?? 0) >= count) return;
    if (performance.now() > deadline) {
      throw new Error(
        `${count} suspended sessions expected, the server has ${JSON.stringify(states)}`,
      );
    }
    await wait(20);
  }
}

// ---- memory per suspended session ---------------------------------------------------------------

interface MemoryResult {
  sessions: number;
  /** Unacked messages each session holds. */
  unacked: number;
  rssMiB: number;
  rssKiBPerSession: number;
  heapKiBPerSession: number;
  /** The same, while the sessions were connected (before the drop). */
  connectedRssKiBPerSession: number;
  connectedHeapKiBPerSession: number;
}

/**
 * In a server process of its own (RSS does not shrink once memory is freed), with
 * MEMORY_NODE_ARGS: a few sessions opened and dropped first, so that the paths are compiled and
 * their code does not count; then the server's memory after forced collections, `sessions`
 * sessions on `path` (each once it has `unacked` messages, which it does not ack), the memory, a
 * drop of every connection without a close frame, and the memory once the server has them all
 * suspended.
 */
async function memoryRun(
  bench: ReliableBench,
  path: string,
  unacked: number,
  settings: { sessions: number; warmupSessions: number },
): Promise<MemoryResult> {
  const { sessions, warmupSessions } = settings;
  const server = bench.start('reliable.js', MEMORY_NODE_ARGS);
  const port = (await server.ready) as number;
  const open = (connections: number) =>
    bench.load.ask(
      {
        cmd: 'sessions',
        port,
        path,
        connections,
        messages: unacked,
        acks: false,
      } satisfies LoadCommand,
      Math.max(120, connections / 50),
    );
  const drop = () => bench.load.ask({ cmd: 'drop' } satisfies LoadCommand);
  const memory = async () => {
    await server.ask({ ask: 'memory' });
    await wait(SETTLE_MS);
    return server.ask<{ rss: number; heapUsed: number }>({ ask: 'memory' });
  };
  try {
    await open(warmupSessions);
    await drop();
    await suspended(server, warmupSessions);
    const before = await memory();
    await open(sessions);
    const connected = await memory();
    await drop();
    await suspended(server, warmupSessions + sessions);
    const after = await memory();
    const perSession = (bytes: number) => bytes / sessions / 1024;
    const result = {
      sessions,
      unacked,
      rssMiB: after.rss / 1024 / 1024,
      rssKiBPerSession: perSession(after.rss - before.rss),
      heapKiBPerSession: perSession(after.heapUsed - before.heapUsed),
      connectedRssKiBPerSession: perSession(connected.rss - before.rss),
      connectedHeapKiBPerSession: perSession(
        connected.heapUsed - before.heapUsed,
      ),
    };
    bench.log(
      `reliable-memory ${path}: suspended ${fmt(result.rssKiBPerSession, 2)} KiB RSS, ${fmt(result.heapKiBPerSession, 2)} KiB heap a session`,
    );
    return result;
  } finally {
    await server.stop();
  }
}

// ---- the client's size --------------------------------------------------------------------------

/** The browser bundle of nestjs-ws-endpoints/client, as scripts/build-client.mjs makes it. */
async function clientSize(): Promise<{
  minifiedKiB: number;
  gzippedKiB: number;
}> {
  // bench/.build/bench → the checkout; a computed specifier, which tsc leaves to Node's import()
  const script = join(
    __dirname,
    '..',
    '..',
    '..',
    'scripts',
    'build-client.mjs',
  );
  const { bundleClient } = await import(pathToFileURL(script).href);
  const code: Uint8Array = await bundleClient();
  return {
    minifiedKiB: code.length / 1024,
    gzippedKiB: gzipSync(code, { level: 9 }).length / 1024,
  };
}

// ---- report -------------------------------------------------------------------------------------

function report(
  bench: ReliableBench,
  result: {
    settings: { warmupSessions: number };
    echo: EchoResult[];
    resume: ResumeResult;
    memory: Record<'empty' | 'held', MemoryResult>;
    client: { minifiedKiB: number; gzippedKiB: number };
  },
): string {
  const { echo, resume, memory, client } = result;
  const lines = [
    '### Reliable mode: server CPU per echoed message',
    '',
    `Closed-loop echo of a 33-byte text message; a. in its own process, b. and r. in one (bench/servers/reliable.ts); ${bench.repeats} repeat(s), medians. r.'s client speaks the envelope and acks as nestjs-ws-endpoints/client does (every ${ACK_EVERY} messages or ${ACK_DELAY} ms). ×raw, ×plain: server µs/msg ÷ a.'s, ÷ b.'s, each the median of the repeats' ratios; goal r. ×plain ≤ ${GOALS.cpuRatio}. Core %: CPU time ÷ wall time of the server's and the load generator's process. Acks/msg: ack frames per echoed message, the client's and the server's (both ack after ${ACK_EVERY} messages or ${ACK_DELAY} ms).`,
    '',
    '| connections | endpoint | msgs/s | p99 ms | server µs/msg | ×raw | ×plain | server core % | load core % | client µs/msg | acks/msg, client · server |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const run of echo) {
    for (const spec of ECHOES) {
      const rows = run.rows[spec.id];
      const of = (key: string) => median(rows.map((row) => row[key]));
      const busy = (key: string) =>
        median(rows.map((row) => (row[key] * row.msgsPerSec) / 1e4));
      const toRaw = {
        raw: 1,
        plain: run.plainToRaw,
        reliable: run.reliableToRaw,
      }[spec.id];
      const toPlain = spec.id === 'reliable' ? fmt(run.reliableToPlain, 2) : '';
      lines.push(
        `| ${run.connections} | ${spec.label} | ${fmt(of('msgsPerSec'), 0)} | ${fmt(of('p99'), 2)} | ${fmt(of('serverUsPerMsg'), 2)} | ${fmt(toRaw, 2)} | ${spec.id === 'reliable' ? `**${toPlain}**` : ''} | ${fmt(busy('serverUsPerMsg'), 0)} | ${fmt(busy('clientUsPerMsg'), 0)} | ${fmt(of('clientUsPerMsg'), 2)} | ${spec.id === 'reliable' ? `${fmt(of('clientAcksPerMsg'), 3)} · ${fmt(of('serverAcksPerMsg'), 3)}` : ''} |`,
      );
    }
  }
  const kib = (value: number) => `${fmt(value, 2)} KiB`;
  const held = `${memory.held.unacked} unacked ${HELD.bytes}-byte messages`;
  const ratios = echo
    .map(
      (run) => `**${fmt(run.reliableToPlain, 2)}×** (${run.connections} conn.)`,
    )
    .join(', ');
  const suspendedRow = (label: string, m: MemoryResult) =>
    `| Memory per suspended session, ${label} | **${kib(m.heapKiBPerSession)} heap**, ${kib(m.rssKiBPerSession)} RSS | |`;
  lines.push(
    '',
    '### Reliable mode: summary',
    '',
    '| measure | value | goal |',
    '|---|---|---|',
    `| Server CPU per echoed message, reliable ÷ plain | ${ratios} | ≤ ${GOALS.cpuRatio}× |`,
    `| Resume with ${resume.messages.toLocaleString('en')} messages to replay: reconnect → ${resume.messages.toLocaleString('en')}th message, median of ${resume.replayMs.length} | **${fmt(resume.medianReplayMs, 1)} ms** (welcome after ${fmt(resume.medianWelcomeMs, 2)} ms) | |`,
    suspendedRow('empty replay buffer', memory.empty),
    suspendedRow(held, memory.held),
    `| Client, browser bundle (scripts/build-client.mjs) | **${kib(client.gzippedKiB)} gzipped**, ${kib(client.minifiedKiB)} minified | ≤ ${GOALS.gzippedKiB} KiB gzipped |`,
    '',
    `Resume: a session on /replay dropped without a close frame; once the server has it suspended, its handler sends the messages; timed on the load generator from the reconnect (\`?ws_resume=<token>&ws_ack=<last seq>\`), after one unmeasured run.`,
    '',
    '### Reliable mode: memory per session',
    '',
    `${memory.empty.sessions} sessions, in a server process of its own (Node with ${MEMORY_NODE_ARGS.join(' ')}), after ${result.settings.warmupSessions} sessions opened and dropped as a warm-up; the server's heap and RSS after forced collections, before the sessions, with them connected, and once every connection was dropped without a close frame and the server has them all suspended, ÷ sessions. RSS keeps what the dropped connections held until the allocator returns it: the heap is the figure of what a suspended session holds.`,
    '',
    '| sessions | heap KiB, connected | heap KiB, suspended | RSS KiB, connected | RSS KiB, suspended |',
    '|---|---:|---:|---:|---:|',
    ...(
      [
        ['empty replay buffer', memory.empty],
        [held, memory.held],
      ] as const
    ).map(
      ([label, m]) =>
        `| ${label} | ${fmt(m.connectedHeapKiBPerSession, 2)} | ${fmt(m.heapKiBPerSession, 2)} | ${fmt(m.connectedRssKiBPerSession, 2)} | ${fmt(m.rssKiBPerSession, 2)} |`,
    ),
  );
  return lines.join('\n');
}
