// npm run bench [-- --quick]: each server in its own process, the load generator in another,
// pinned to different cores; every figure also as a ratio to raw ws measured in the same run.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { setTimeout as wait } from 'node:timers/promises';
import type { LoadCommand, Protocol } from './load/load';
import { AUTH_HEADER } from './servers/serve';

const quick = process.argv.includes('--quick');
// --only=ours,raw-ws and --workloads=echo-1000-text narrow a run; --idle=19000 sets the number of
// idle connections (each costs a file descriptor on both sides: see `ulimit -n`, and bench/vm.sh
// where it cannot be raised); --profile writes the servers' CPU profiles to
// bench/results/profiles (open them in Chrome DevTools); --repeats=5 takes more medians on a
// noisy machine
const option = (name: string) =>
  process.argv
    .find((arg) => arg.startsWith(`--${name}=`))
    ?.split('=')[1]
    ?.split(',');
const only = option('only');
const onlyWorkloads = option('workloads');
const profile = process.argv.includes('--profile');
const REPEATS = Number(option('repeats')?.[0] ?? (quick ? 1 : 3));
const WARMUP_MS = quick ? 300 : 2_000;
const MEASURE_MS = quick ? 1_000 : 10_000;
const IDLE = Number(option('idle')?.[0] ?? (quick ? 1_000 : 10_000));
const HANDSHAKES = quick ? 500 : 2_000;
const TEXT = 'hello, world: the quick brown fox';
const JSON_BODY = { n: 42, text: 'hello, world' };

type Kind = 'plain' | 'gateway' | 'socketio';
interface ServerSpec {
  id: string;
  label: string;
  file: string;
  kind: Kind;
  event?: string;
  paths: Partial<Record<'text' | 'json' | 'guarded' | 'plain', string>>;
  /** A reference, not a competitor: which part of a figure is ours; no idle run. */
  reference?: boolean;
}

/** Our servers' and raw ws's endpoints: text, JSON, a guarded one, and one for handshakes. */
const ECHO_PATHS = {
  text: '/text',
  json: '/json',
  guarded: '/guarded',
  plain: '/text',
};

const SERVERS: ServerSpec[] = [
  {
    id: 'raw-ws',
    label: 'a. raw ws',
    file: 'raw-ws.js',
    kind: 'plain',
    paths: ECHO_PATHS,
  },
  {
    id: 'ours',
    label: 'b. @Ws loop',
    file: 'ours.js',
    kind: 'plain',
    paths: ECHO_PATHS,
  },
  {
    id: 'ours-dto',
    label: 'c. @Ws messages(Dto) + ValidationPipe',
    file: 'ours.js',
    kind: 'plain',
    paths: { json: '/dto' },
  },
  {
    id: 'gateway',
    label: 'd. Nest gateway (WsAdapter)',
    file: 'gateway.js',
    kind: 'gateway',
    event: 'echo',
    paths: { text: '/gateway', json: '/gateway', plain: '/gateway' },
  },
  {
    id: 'gateway-dto',
    label: 'd. Nest gateway + ValidationPipe',
    file: 'gateway.js',
    kind: 'gateway',
    event: 'dto',
    paths: { json: '/gateway' },
  },
  {
    id: 'socket-io',
    label: 'e. Socket.IO 4',
    file: 'socket-io.js',
    kind: 'socketio',
    paths: { text: '/', json: '/', plain: '/' },
  },
  {
    id: 'fastify-ws',
    label: 'f. @fastify/websocket',
    file: 'fastify-websocket.js',
    kind: 'plain',
    paths: { text: '/text', json: '/json', plain: '/text' },
  },
  {
    id: 'express-floor',
    label: 'g. reference: an Express route + ws, no Nest',
    file: 'express-floor.js',
    kind: 'plain',
    paths: { plain: '/text', guarded: '/guarded' },
    reference: true,
  },
  {
    id: 'validation-floor',
    label: 'h. reference: raw ws + ValidationPipe, no Nest',
    file: 'validation-floor.js',
    kind: 'plain',
    paths: { json: '/dto' },
    reference: true,
  },
];

/** What each server is sent for one message of the workload, in its own framing. */
function messageFor(server: ServerSpec, body: 'text' | 'json'): string {
  const data = body === 'text' ? TEXT : JSON_BODY;
  if (server.kind === 'gateway')
    return JSON.stringify({ event: server.event, data });
  if (server.kind === 'socketio') return `42${JSON.stringify(['echo', data])}`;
  return body === 'text' ? TEXT : JSON.stringify(data);
}

const protocolOf = (server: ServerSpec): Protocol =>
  server.kind === 'socketio' ? 'socketio' : 'ws';

// ---- processes ------------------------------------------------------------------------------

const children: ChildProcess[] = [];
// SIGINT lets a profiled server write its profile before it exits
const STOP_SIGNAL = profile ? 'SIGINT' : 'SIGKILL';
const canPin = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
/** bench/results, from where this file runs: bench/.build/bench. */
const RESULTS = join(__dirname, '..', '..', 'results');
// compiled JavaScript, as apps run in production (ts-node would also load `domain`, which slows
// down every EventEmitter)
const NODE_ARGS = ['--expose-gc'];
const PROFILE_ARGS = [
  '--cpu-prof',
  `--cpu-prof-dir=${join(RESULTS, 'profiles')}`,
];

/** A Node process running `file`, pinned to `core`, that answers over IPC. */
class Child {
  private next = 0;
  private readonly waiting = new Map<number, (reply: any) => void>();
  readonly ready: Promise<any>;

  constructor(file: string, core: number, profiled = false) {
    const args = [
      ...NODE_ARGS,
      ...(profiled ? PROFILE_ARGS : []),
      join(__dirname, file),
    ];
    const child = canPin
      ? spawn('taskset', ['-c', String(core), process.execPath, ...args], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        })
      : spawn(process.execPath, args, {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
    children.push(child);
    this.ready = new Promise((resolve) => {
      child.on('message', (reply: any) => {
        if (reply.ready !== undefined) return resolve(reply.ready);
        this.waiting.get(reply.id)?.(reply);
        this.waiting.delete(reply.id);
      });
    });
    this.process = child;
  }

  readonly process: ChildProcess;

  /** Stops the process, and resolves once it has exited. */
  stop(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.process.once('exit', () => resolve());
      this.process.kill(STOP_SIGNAL);
    });
  }

  /** Rejects after `seconds` without an answer, so that a stuck process cannot hang the run. */
  ask<T = any>(message: object, seconds = 120): Promise<T> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `No answer to ${JSON.stringify(message)} in ${seconds} s`,
            ),
          ),
        seconds * 1000,
      );
      this.waiting.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.error) reject(new Error(reply.error));
        else resolve(reply.result ?? reply);
      });
      this.process.send({ ...message, id });
    });
  }
}

function stopAll(): void {
  for (const child of children) child.kill(STOP_SIGNAL);
}
process.on('exit', stopAll);
process.on('SIGINT', () => process.exit(130));

// ---- workloads ------------------------------------------------------------------------------

interface Row {
  [metric: string]: number;
}

async function cpuOf(server: Child): Promise<number> {
  const { cpu } = await server.ask<{ cpu: NodeJS.CpuUsage }>({ ask: 'usage' });
  return cpu.user + cpu.system;
}

async function echoRun(
  server: Child,
  port: number,
  load: Child,
  path: string,
  connections: number,
  message: string,
  protocol: Protocol,
  client: 'lean' | 'ws' = 'lean',
): Promise<Row> {
  await load.ask({
    cmd: 'echo',
    port,
    path,
    connections,
    message,
    protocol,
    client,
  } satisfies LoadCommand);
  await wait(WARMUP_MS);
  const cpuBefore = await cpuOf(server);
  await load.ask({ cmd: 'mark' } satisfies LoadCommand);
  await wait(MEASURE_MS);
  const cpuAfter = await cpuOf(server);
  const report = await load.ask({ cmd: 'report' } satisfies LoadCommand);
  return {
    msgsPerSec: report.messages / report.seconds,
    p50: report.p50,
    p99: report.p99,
    p999: report.p999,
    serverUsPerMsg: (cpuAfter - cpuBefore) / report.messages,
    clientUsPerMsg: report.clientCpuUs / report.messages,
  };
}

/**
 * In a server process of its own: RSS does not shrink once memory is freed, so a process that has
 * run other workloads would hold what they left reserved, and the connections would seem to cost
 * nothing.
 */
async function idleRun(
  _shared: Child,
  _port: number,
  load: Child,
  spec: ServerSpec,
): Promise<Row> {
  const server = new Child(join('servers', spec.file), 0);
  const port: number = await server.ready;
  const before = await server.ask({ ask: 'memory' });
  // 50,000 handshakes on a slow machine (an emulated one, say) take minutes
  await load.ask(
    {
      cmd: 'idle',
      port,
      path: spec.paths.plain!,
      connections: IDLE,
      protocol: protocolOf(spec),
    } satisfies LoadCommand,
    Math.max(120, IDLE / 50),
  );
  const after = await server.ask({ ask: 'memory' });
  await load.ask({ cmd: 'close' } satisfies LoadCommand);
  await server.stop();
  return {
    rssMiB: after.rss / 1024 / 1024,
    rssKiBPerConn: (after.rss - before.rss) / IDLE / 1024,
    heapKiBPerConn: (after.heapUsed - before.heapUsed) / IDLE / 1024,
  };
}

async function handshakeRun(
  server: Child,
  port: number,
  load: Child,
  spec: ServerSpec,
  path: string,
  headers: Record<string, string>,
): Promise<Row> {
  const handshakes = (count: number) =>
    load.ask({
      cmd: 'handshakes',
      port,
      path,
      count,
      inFlight: 100,
      headers,
      protocol: protocolOf(spec),
    } satisfies LoadCommand);
  // a warm-up, as for the echo: the upgrade path is compiled before it is measured
  await handshakes(HANDSHAKES / 4);
  const cpuBefore = await cpuOf(server);
  const { seconds } = await handshakes(HANDSHAKES);
  const cpuAfter = await cpuOf(server);
  return {
    handshakesPerSec: HANDSHAKES / seconds,
    serverUsPerHandshake: (cpuAfter - cpuBefore) / HANDSHAKES,
  };
}

interface Workload {
  id: string;
  title: string;
  applies(spec: ServerSpec): boolean;
  run(server: Child, port: number, load: Child, spec: ServerSpec): Promise<Row>;
}

const echo = (connections: number, body: 'text' | 'json'): Workload => ({
  id: `echo-${connections}-${body}`,
  title: `Echo, ${connections} connections, ${body}`,
  applies: (spec) => spec.paths[body] !== undefined,
  run: (server, port, load, spec) =>
    echoRun(
      server,
      port,
      load,
      spec.paths[body]!,
      connections,
      messageFor(spec, body),
      protocolOf(spec),
    ),
});

const WORKLOADS: Workload[] = [
  echo(50, 'text'),
  echo(50, 'json'),
  echo(1000, 'text'),
  echo(1000, 'json'),
  {
    id: `handshakes-${HANDSHAKES}`,
    title: `${HANDSHAKES} handshakes, 100 in flight`,
    applies: (spec) => !!spec.paths.plain,
    run: (s, p, l, spec) => handshakeRun(s, p, l, spec, spec.paths.plain!, {}),
  },
  {
    id: `handshakes-${HANDSHAKES}-guard`,
    title: `${HANDSHAKES} handshakes with a guard (bearer token)`,
    applies: (spec) => !!spec.paths.guarded,
    run: (s, p, l, spec) =>
      handshakeRun(s, p, l, spec, spec.paths.guarded!, {
        authorization: AUTH_HEADER,
      }),
  },
  // last: its 20,000 sockets are still being torn down when the next run starts, which should
  // weigh on the echo's warm-up rather than on a run measured from its first handshake
  {
    id: `idle-${IDLE}`,
    title: `${IDLE} idle connections`,
    applies: (spec) => !!spec.paths.plain && !spec.reference,
    run: idleRun,
  },
];

// ---- report ---------------------------------------------------------------------------------

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
};
const fmt = (value: number, digits = 1) =>
  Number.isFinite(value) ? value.toFixed(digits) : '—';

const COLUMNS: Record<string, [string, string, number][]> = {
  echo: [
    ['msgsPerSec', 'msgs/s', 0],
    ['p50', 'p50 ms', 2],
    ['p99', 'p99 ms', 2],
    ['p999', 'p99.9 ms', 2],
    ['serverUsPerMsg', 'server µs/msg', 2],
    ['clientUsPerMsg', 'client µs/msg', 2],
  ],
  idle: [
    ['rssMiB', 'RSS MiB', 0],
    ['rssKiBPerConn', 'RSS KiB/conn', 2],
    ['heapKiBPerConn', 'heap KiB/conn', 2],
  ],
  handshakes: [
    ['handshakesPerSec', 'handshakes/s', 0],
    ['serverUsPerHandshake', 'server µs/handshake', 1],
  ],
};

/**
 * Each server's medians; its ×raw is the median, over the repeats, of its ratio to the raw ws run
 * of the same repeat, which ran minutes apart at most: on a shared machine, whose speed drifts
 * between repeats, that is steadier than a ratio of medians taken from different repeats.
 */
function table(workload: Workload, results: Map<string, Row[]>): string {
  const columns = COLUMNS[workload.id.split('-')[0]];
  const raw = results.get('raw-ws');
  const lines = [
    `### ${workload.title}`,
    '',
    `| server | ${columns.map(([, title]) => `${title} | ×raw`).join(' | ')} |`,
    `|---|${columns.map(() => '---:|---:').join('|')}|`,
  ];
  for (const spec of SERVERS) {
    const rows = results.get(spec.id);
    if (!rows) continue;
    const cells = columns.map(([key, , digits]) => {
      const value = median(rows.map((row) => row[key]));
      const ratio = raw
        ? median(rows.map((row, repeat) => row[key] / raw[repeat][key]))
        : NaN;
      return `${fmt(value, digits)} | ${fmt(ratio, 2)}`;
    });
    lines.push(`| ${spec.label} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

// ---- main -----------------------------------------------------------------------------------

async function main() {
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${canPin ? 'server on core 0, load on core 1' : 'not pinned (no taskset)'}`;
  console.log(
    `# nestjs-ws-endpoints benchmark${quick ? ' (--quick)' : ''}\n\n${machine}; ${REPEATS} repeat(s), medians, ×raw the median of each repeat's ratio to raw ws; ${WARMUP_MS / 1000} s warm-up, ${MEASURE_MS / 1000} s measured; closed-loop echo with a lean frame client.\n`,
  );
  const load = new Child('load/load.js', 1);
  const servers = SERVERS.filter(
    (spec) => !only || only.includes(spec.id) || spec.id === 'raw-ws',
  );
  const workloads = WORKLOADS.filter(
    (w) => !onlyWorkloads || onlyWorkloads.includes(w.id),
  );
  const files = [...new Set(servers.map((spec) => spec.file))];
  const started = new Map(
    await Promise.all(
      files.map(async (file) => {
        const child = new Child(join('servers', file), 0, profile);
        return [file, { child, port: (await child.ready) as number }] as const;
      }),
    ),
  );
  await load.ready;

  const results = new Map<string, Map<string, Row[]>>(
    workloads.map((w) => [w.id, new Map()]),
  );
  for (let repeat = 0; repeat < REPEATS; repeat++) {
    for (const workload of workloads) {
      for (const spec of servers.filter((s) => workload.applies(s))) {
        const { child, port } = started.get(spec.file)!;
        const row = await workload.run(child, port, load, spec);
        const rows = results.get(workload.id)!;
        rows.set(spec.id, [...(rows.get(spec.id) ?? []), row]);
        process.stderr.write(
          `  ${workload.id} ${spec.id}: ${Object.entries(row)
            .map(([k, v]) => `${k}=${fmt(v, 2)}`)
            .join(' ')}\n`,
        );
      }
    }
  }

  // the lean client against the ws client, once: how much of msgs/s is the client's limit
  const raw = started.get('raw-ws.js')!;
  const crossCheck = {
    lean: await echoRun(
      raw.child,
      raw.port,
      load,
      '/text',
      50,
      TEXT,
      'ws',
      'lean',
    ),
    ws: await echoRun(raw.child, raw.port, load, '/text', 50, TEXT, 'ws', 'ws'),
  };

  for (const workload of workloads)
    console.log(`${table(workload, results.get(workload.id)!)}\n`);
  console.log(
    `### Client cross-check (raw ws, 50 connections, text)\n\n| client | msgs/s | client µs/msg |\n|---|---:|---:|\n` +
      `| lean frame writer | ${fmt(crossCheck.lean.msgsPerSec, 0)} | ${fmt(crossCheck.lean.clientUsPerMsg, 2)} |\n` +
      `| ws client | ${fmt(crossCheck.ws.msgsPerSec, 0)} | ${fmt(crossCheck.ws.clientUsPerMsg, 2)} |\n`,
  );

  mkdirSync(RESULTS, { recursive: true });
  const file = join(
    RESULTS,
    `${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`,
  );
  writeFileSync(
    file,
    JSON.stringify(
      {
        machine,
        quick,
        repeats: REPEATS,
        results: Object.fromEntries(
          [...results].map(([k, v]) => [k, Object.fromEntries(v)]),
        ),
        crossCheck,
      },
      null,
      2,
    ),
  );
  console.log(`JSON: ${file}`);
  stopAll();
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
  stopAll();
});
