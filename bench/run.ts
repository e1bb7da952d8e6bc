// npm run bench [-- --quick]: each server in its own process, the load generator in another,
// pinned to different cores; every figure also as a ratio to raw ws measured in the same run, and
// for handshakes, ours as a ratio to the same platform's floor measured in the same run.
// bench/callgrind.sh runs it with --callgrind: instructions per handshake, counted by valgrind.
import { ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as wait } from 'node:timers/promises';
import type { LoadCommand, Protocol } from './load/load';
import { groupsBenchmark, isGroupsWorkload } from './groups';
import { reliableBenchmark } from './reliable';
import { AUTH_HEADER } from './servers/serve';
import { fmt, median } from './stats';

const quick = process.argv.includes('--quick');
// --only=ours,raw-ws and --workloads=echo-1000-text narrow a run (raw ws, and the floor of a
// server that has one, always run); reliable mode's benchmark (bench/reliable.ts) runs last,
// unless --only or --workloads leaves it out (--workloads=reliable runs it alone), then the groups
// benchmark (bench/groups.ts) the same way (--workloads=groups, or one of its parts:
// --workloads=groups-broadcast); --idle=19000
// sets the number of idle connections (each costs a file descriptor on both sides: see
// `ulimit -n`, and bench/vm.sh where it cannot be raised);
// --profile writes the servers' CPU profiles to bench/results/profiles (open them in Chrome
// DevTools); --repeats=5 takes more medians on a noisy machine. --callgrind (bench/callgrind.sh)
// counts instructions per handshake instead, with --handshakes=1000 and --warmup=6000 (per message
// with --workloads=echo-1000-text and the like).
const option = (name: string) =>
  process.argv
    .find((arg) => arg.startsWith(`--${name}=`))
    ?.split('=')[1]
    ?.split(',');
const only = option('only');
const onlyWorkloads = option('workloads');
const profile = process.argv.includes('--profile');
const callgrind = process.argv.includes('--callgrind');
const REPEATS = Number(option('repeats')?.[0] ?? (quick || callgrind ? 1 : 3));
const WARMUP_MS = quick ? 300 : 2_000;
const MEASURE_MS = quick ? 1_000 : 10_000;
const IDLE = Number(option('idle')?.[0] ?? (quick ? 1_000 : 10_000));
const HANDSHAKES = Number(
  option('handshakes')?.[0] ?? (callgrind ? 1_000 : quick ? 500 : 2_000),
);
/**
 * Handshakes before the measured ones, so that the upgrade path is compiled when measured. Under
 * callgrind, raw ws's count fell from 517k a handshake after 300 to 259k after 3,000 and 194k
 * after 6,000 (V8's tiers finish, its young generation grows, scavenges get rarer), and stayed
 * there after 12,000; uncounted, they take seconds.
 */
const HANDSHAKE_WARMUP = Number(
  option('warmup')?.[0] ?? (callgrind ? 6_000 : HANDSHAKES / 4),
);
/** The plain HTTP routes registered beside the WebSocket routes in the `-routes100` workloads. */
const ROUTES = 100;
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
  /** Command-line arguments of the server's process. */
  args?: string[];
  /** A reference, not a competitor: which part of a figure is ours; no idle run. */
  reference?: boolean;
  /** The id of the same platform's floor, that its handshakes are also given as a ratio to. */
  floor?: string;
  /** It has an HTTP router, which gets `--routes=100` in the `-routes100` workloads. */
  router?: boolean;
  /** Only in the `-routes100` workloads. */
  routesOnly?: boolean;
  /** The workloads it skips under --quick, to keep CI's smoke run short. */
  quickSkips?: RegExp;
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
    floor: 'express-floor',
    router: true,
  },
  {
    id: 'ours-fastify',
    label: 'b2. @Ws loop on Fastify',
    file: 'ours.js',
    args: ['--fastify'],
    kind: 'plain',
    paths: ECHO_PATHS,
    floor: 'fastify-ws',
    router: true,
    quickSkips: /^echo-(50-json|1000-)/,
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
    router: true,
    quickSkips: /-routes/,
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
    paths: {
      text: '/text',
      json: '/json',
      plain: '/text',
      guarded: '/guarded',
    },
    router: true,
  },
  {
    id: 'express-floor',
    label: 'g. reference: an Express route + ws, no Nest',
    file: 'express-floor.js',
    kind: 'plain',
    paths: { plain: '/text', guarded: '/guarded' },
    reference: true,
    router: true,
  },
  {
    // the same process as g.'s under --routes=100: its routes registered after the 100 routes
    id: 'express-floor-walked',
    label:
      'g2. reference: g. with its route after the 100 (Express tries them first)',
    file: 'express-floor.js',
    kind: 'plain',
    paths: { plain: '/walked/text', guarded: '/walked/guarded' },
    reference: true,
    floor: 'express-floor',
    router: true,
    routesOnly: true,
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

interface ChildOptions {
  /** Command-line arguments after the file. */
  args?: string[];
  profiled?: boolean;
  /** A command that runs Node, as `valgrind --tool=callgrind`. */
  wrapper?: string[];
  /** Node's options beyond NODE_ARGS. */
  nodeArgs?: string[];
}

/** A Node process running `file`, pinned to `core`, that answers over IPC. */
class Child {
  private next = 0;
  private readonly waiting = new Map<number, (reply: any) => void>();
  readonly ready: Promise<any>;

  constructor(
    file: string,
    core: number,
    {
      args = [],
      profiled = false,
      wrapper = [],
      nodeArgs = [],
    }: ChildOptions = {},
  ) {
    const command = [
      ...(canPin ? ['taskset', '-c', String(core)] : []),
      ...wrapper,
      process.execPath,
      ...NODE_ARGS,
      ...nodeArgs,
      ...(profiled ? PROFILE_ARGS : []),
      join(__dirname, file),
      ...args,
    ];
    const child = spawn(command[0], command.slice(1), {
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
    ...(protocol === 'envelope'
      ? {
          clientAcksPerMsg: report.acksSent / report.messages,
          serverAcksPerMsg: report.acksReceived / report.messages,
        }
      : {}),
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
  const server = new Child(join('servers', spec.file), 0, {
    args: spec.args,
  });
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

/** The load generator's order for `count` handshakes with `path`, 100 in flight. */
const handshakesCommand = (
  port: number,
  spec: ServerSpec,
  path: string,
  headers: Record<string, string>,
  count: number,
): LoadCommand => ({
  cmd: 'handshakes',
  port,
  path,
  count,
  inFlight: 100,
  headers,
  protocol: protocolOf(spec),
});

async function handshakeRun(
  server: Child,
  port: number,
  load: Child,
  spec: ServerSpec,
  path: string,
  headers: Record<string, string>,
): Promise<Row> {
  const handshakes = (count: number) =>
    load.ask(handshakesCommand(port, spec, path, headers, count));
  // a warm-up, as for the echo: the upgrade path is compiled before it is measured
  await handshakes(HANDSHAKE_WARMUP);
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
  /** The plain HTTP routes that the servers with a router register beside their own. */
  routes?: number;
  /** It starts a server process of its own for each run. */
  ownProcess?: boolean;
  /** Left out of --quick. */
  notQuick?: boolean;
  /** For handshakes: the path and headers of each upgrade. */
  upgrade?: (spec: ServerSpec) => [string, Record<string, string>];
  applies(spec: ServerSpec): boolean;
  run(server: Child, port: number, load: Child, spec: ServerSpec): Promise<Row>;
}

const echo = (connections: number, body: 'text' | 'json'): Workload => ({
  id: `echo-${connections}-${body}`,
  title: `Echo, ${connections} connections, ${body}`,
  applies: (spec) => spec.paths[body] !== undefined && !spec.routesOnly,
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

/**
 * Handshakes, with a guard or without, in apps with no other route or with `routes` plain HTTP
 * routes: Express tries routes in the order they were added, so an app's route table can be part
 * of what an upgrade costs (see bench/servers/ours.ts and express-floor.ts for the order).
 * Servers without a router (raw ws, Socket.IO) have nothing to add routes to: raw ws runs the
 * `-routes100` workloads as it runs the others, for ×raw; Socket.IO does not run them.
 */
const handshakes = (guarded: boolean, routes = 0): Workload => {
  const key = guarded ? 'guarded' : 'plain';
  const headers: Record<string, string> = guarded
    ? { authorization: AUTH_HEADER }
    : {};
  return {
    id: `handshakes-${HANDSHAKES}${guarded ? '-guard' : ''}${routes ? `-routes${routes}` : ''}`,
    title: `${HANDSHAKES} handshakes${guarded ? ' with a guard (bearer token)' : ', 100 in flight'}${routes ? `, ${routes} plain HTTP routes in the app` : ''}`,
    routes,
    notQuick: guarded && routes > 0,
    upgrade: (spec) => [spec.paths[key]!, headers],
    applies: (spec) =>
      spec.paths[key] !== undefined &&
      (routes
        ? spec.router === true || spec.id === 'raw-ws'
        : !spec.routesOnly),
    run: (s, p, l, spec) =>
      handshakeRun(s, p, l, spec, spec.paths[key]!, headers),
  };
};

const WORKLOADS: Workload[] = [
  echo(50, 'text'),
  echo(50, 'json'),
  echo(1000, 'text'),
  echo(1000, 'json'),
  handshakes(false),
  handshakes(true),
  handshakes(false, ROUTES),
  handshakes(true, ROUTES),
  // last: its 20,000 sockets are still being torn down when the next run starts, which should
  // weigh on the echo's warm-up rather than on a run measured from its first handshake
  {
    id: `idle-${IDLE}`,
    title: `${IDLE} idle connections`,
    applies: (spec) => !!spec.paths.plain && !spec.reference,
    ownProcess: true,
    run: idleRun,
  },
];

/** The arguments of `spec`'s server process in `workload`, which also tell processes apart. */
const argsFor = (spec: ServerSpec, workload: Workload): string[] => [
  ...(spec.args ?? []),
  ...(workload.routes && spec.router ? [`--routes=${workload.routes}`] : []),
];
const processKey = (spec: ServerSpec, workload: Workload) =>
  [spec.file, ...argsFor(spec, workload)].join(' ');

// ---- report ---------------------------------------------------------------------------------

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

type Results = Map<string, Row[]>;

/**
 * The median over the repeats of `rows`' ratio to `base`'s run of the same repeat, which ran
 * minutes apart at most: on a shared machine, whose speed drifts between repeats, that is steadier
 * than a ratio of medians taken from different repeats.
 */
const ratioTo = (rows: Row[], base: Row[] | undefined, key: string) =>
  base ? median(rows.map((row, repeat) => row[key] / base[repeat][key])) : NaN;

/** For handshakes: ×floor, ours as a ratio to the same platform's floor in the same run. */
const hasFloor = (workload: Workload) => workload.upgrade !== undefined;

/** Each server's medians, with its ×raw and, for handshakes, its ×floor. */
function table(
  workload: Workload,
  results: Results,
  columns = COLUMNS[workload.id.split('-')[0]],
  title = workload.title,
): string {
  const raw = results.get('raw-ws');
  const floors = hasFloor(workload);
  const lines = [`### ${title}`, ''];
  const ratioed = SERVERS.filter((spec) => spec.floor && results.has(spec.id));
  if (floors && ratioed.length) {
    const labelOf = (id: string) =>
      SERVERS.find((spec) => spec.id === id)!.label.split(' ')[0];
    lines.push(
      `×floor: the ratio to the same platform's floor in the same repeat (${ratioed.map((spec) => `${labelOf(spec.id)} ÷ ${labelOf(spec.floor!)}`).join(', ')})`,
      '',
    );
  }
  const ratios = floors ? '×raw | ×floor' : '×raw';
  lines.push(
    `| server | ${columns.map(([, title]) => `${title} | ${ratios}`).join(' | ')} |`,
    `|---|${columns.map(() => (floors ? '---:|---:|---:' : '---:|---:')).join('|')}|`,
  );
  for (const spec of SERVERS) {
    const rows = results.get(spec.id);
    if (!rows) continue;
    const floor = spec.floor ? results.get(spec.floor) : undefined;
    const cells = columns.map(([key, , digits]) => {
      const value = fmt(median(rows.map((row) => row[key])), digits);
      const ratio = fmt(ratioTo(rows, raw, key), 2);
      return floors
        ? `${value} | ${ratio} | ${fmt(ratioTo(rows, floor, key), 2)}`
        : `${value} | ${ratio}`;
    });
    lines.push(`| ${spec.label} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The ratios of the tables, for the JSON: each server's metric ÷ raw ws and ÷ its floor. */
function ratiosOf(workload: Workload, results: Results) {
  const raw = results.get('raw-ws');
  return Object.fromEntries(
    [...results].map(([id, rows]) => {
      const spec = SERVERS.find((s) => s.id === id)!;
      const floor =
        hasFloor(workload) && spec.floor ? results.get(spec.floor) : undefined;
      return [
        id,
        Object.fromEntries(
          Object.keys(rows[0]).map((key) => [
            key,
            {
              raw: ratioTo(rows, raw, key),
              ...(floor
                ? { floor: ratioTo(rows, floor, key), floorOf: spec.floor }
                : {}),
            },
          ]),
        ),
      ];
    }),
  );
}

/**
 * The servers of the run: those of --only, raw ws, and the floor of each; all by default. The
 * callgrind run's defaults leave out the servers without a floor of their own to compare with.
 */
function selectServers(defaults?: string[]): ServerSpec[] {
  const chosen = only ?? defaults;
  const ids = new Set(
    SERVERS.filter((spec) => !chosen || chosen.includes(spec.id)).map(
      (spec) => spec.id,
    ),
  );
  ids.add('raw-ws');
  for (const spec of SERVERS) {
    if (ids.has(spec.id) && spec.floor) ids.add(spec.floor);
  }
  return SERVERS.filter((spec) => ids.has(spec.id));
}

// ---- main -----------------------------------------------------------------------------------

async function main() {
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${canPin ? 'server on core 0, load on core 1' : 'not pinned (no taskset)'}`;
  console.log(
    `# nestjs-ws-endpoints benchmark${quick ? ' (--quick)' : ''}\n\n${machine}; ${REPEATS} repeat(s), medians, ×raw the median of each repeat's ratio to raw ws; ${WARMUP_MS / 1000} s warm-up, ${MEASURE_MS / 1000} s measured; closed-loop echo with a lean frame client.\n`,
  );
  const load = new Child('load/load.js', 1);
  const servers = selectServers();
  // CI's smoke run leaves out a few runs that would add time and check nothing new, unless it
  // is told what to run
  const smoke = quick && !onlyWorkloads && !only;
  const workloads = WORKLOADS.filter((w) =>
    onlyWorkloads ? onlyWorkloads.includes(w.id) : !(smoke && w.notQuick),
  );
  const withReliable = onlyWorkloads
    ? onlyWorkloads.includes('reliable')
    : !only;
  const groupsWorkloads = onlyWorkloads
    ? onlyWorkloads.filter(isGroupsWorkload)
    : only
      ? []
      : ['groups'];
  const runs = (workload: Workload) =>
    servers.filter(
      (spec) =>
        workload.applies(spec) &&
        !(smoke && spec.quickSkips?.test(workload.id)),
    );
  // a process for each server file and arguments, shared by the workloads that need it; the
  // cross-check below needs raw ws's
  const rawSpec = SERVERS[0];
  const needed = new Map<string, [ServerSpec, Workload]>(
    workloads.length
      ? [[processKey(rawSpec, WORKLOADS[0]), [rawSpec, WORKLOADS[0]]]]
      : [],
  );
  for (const workload of workloads.filter((w) => !w.ownProcess)) {
    for (const spec of runs(workload))
      needed.set(processKey(spec, workload), [spec, workload]);
  }
  const started = new Map(
    await Promise.all(
      [...needed].map(async ([key, [spec, workload]]) => {
        const child = new Child(join('servers', spec.file), 0, {
          args: argsFor(spec, workload),
          profiled: profile,
        });
        return [key, { child, port: (await child.ready) as number }] as const;
      }),
    ),
  );
  await load.ready;

  const results = new Map<string, Results>(
    workloads.map((w) => [w.id, new Map()]),
  );
  for (let repeat = 0; repeat < REPEATS; repeat++) {
    for (const workload of workloads) {
      for (const spec of runs(workload)) {
        const { child, port } = workload.ownProcess
          ? { child: load, port: 0 }
          : started.get(processKey(spec, workload))!;
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
  const raw = started.get(processKey(rawSpec, WORKLOADS[0]));
  const crossCheck = raw && {
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

  const reliable = withReliable
    ? await reliableBenchmark({
        quick,
        repeats: REPEATS,
        load,
        start: (file, nodeArgs) =>
          new Child(join('servers', file), 0, { profiled: profile, nodeArgs }),
        echo: (server, port, path, connections, protocol) =>
          echoRun(server, port, load, path, connections, TEXT, protocol),
        log: (line) => process.stderr.write(`  ${line}\n`),
      })
    : undefined;

  const groups = groupsWorkloads.length
    ? await groupsBenchmark(
        {
          quick,
          repeats: REPEATS,
          start: (file, nodeArgs) =>
            new Child(join('servers', file), 0, {
              profiled: profile,
              nodeArgs,
            }),
          startLoad: (file) => new Child(join('load', file), 1),
          log: (line) => process.stderr.write(`  ${line}\n`),
        },
        groupsWorkloads,
      )
    : undefined;

  for (const workload of workloads)
    console.log(`${table(workload, results.get(workload.id)!)}\n`);
  if (crossCheck) {
    console.log(
      `### Client cross-check (raw ws, 50 connections, text)\n\n| client | msgs/s | client µs/msg |\n|---|---:|---:|\n` +
        `| lean frame writer | ${fmt(crossCheck.lean.msgsPerSec, 0)} | ${fmt(crossCheck.lean.clientUsPerMsg, 2)} |\n` +
        `| ws client | ${fmt(crossCheck.ws.msgsPerSec, 0)} | ${fmt(crossCheck.ws.clientUsPerMsg, 2)} |\n`,
    );
  }
  if (reliable) console.log(`${reliable.markdown}\n`);
  if (groups) console.log(`${groups.markdown}\n`);

  const file = writeJson(quick ? '-quick' : '', {
    machine,
    quick,
    repeats: REPEATS,
    results: Object.fromEntries(
      [...results].map(([k, v]) => [k, Object.fromEntries(v)]),
    ),
    ratios: Object.fromEntries(
      workloads.map((w) => [w.id, ratiosOf(w, results.get(w.id)!)]),
    ),
    crossCheck,
    reliable: reliable?.json,
    groups: groups?.json,
  });
  console.log(`JSON: ${file}`);
  stopAll();
}

/** Writes `data` to bench/results/<date><suffix>.json, and returns the file's path. */
function writeJson(suffix: string, data: object): string {
  mkdirSync(RESULTS, { recursive: true });
  const file = join(
    RESULTS,
    `${new Date().toISOString().replace(/[:.]/g, '-')}${suffix}.json`,
  );
  writeFileSync(file, JSON.stringify(data, null, 2));
  return file;
}

// ---- callgrind --------------------------------------------------------------------------------

/**
 * Instructions per handshake, counted by valgrind's callgrind: user-space instructions, the same
 * whatever else the machine does, where CPU times of handshakes move by 2× between runs. Each
 * server runs in a process of its own under valgrind, started with instrumentation off (about 4×
 * slower than native rather than 50×); after HANDSHAKE_WARMUP handshakes, which leave the upgrade
 * path compiled by V8's tiers, `callgrind_control -i on` starts the count, HANDSHAKES handshakes
 * run, `-i off` stops it and `-d` writes what was counted. The count is of every thread of the
 * process (V8's compiler and GC threads too), as CPU time is; Node runs with
 * CALLGRIND_NODE_ARGS.
 */
const CALLGRIND_SERVERS = [
  'raw-ws',
  'express-floor',
  'express-floor-walked',
  'ours',
  'fastify-ws',
  'ours-fastify',
];
const CALLGRIND_WORKLOADS = [
  `handshakes-${HANDSHAKES}`,
  `handshakes-${HANDSHAKES}-guard`,
  `handshakes-${HANDSHAKES}-routes${ROUTES}`,
];

const run = promisify(execFile);

/**
 * Node's options under callgrind. V8 sizes its heap by how fast the process allocates, timed by
 * the clock; slowed down fifty times, a busy server looks idle to it. Its memory reducer would run
 * full collections, which can drop compiled code; its young generation shrinks after a full
 * collection and grows again, differently from one run to the next (reference g.'s count moved
 * between 252k and 318k a handshake with the scavenges this made). So no memory reducer, and the
 * young generation held at the size a busy server grows it to natively (semi-spaces of 64 MiB,
 * with this machine's Node 24 and 23 GiB).
 */
const CALLGRIND_NODE_ARGS = [
  '--no-memory-reducer',
  '--min-semi-space-size=64',
  '--max-semi-space-size=64',
];

/** V8's functions of garbage collection: scavenges, and marking (on any thread) and sweeping. */
const GC = /Scaveng|Marking|MarkCompact|Sweep/;

/**
 * The instructions of V8's collections in a dump. A young generation of 64 MiB fills about once in
 * a thousand handshakes, so a count holds one scavenge or none, at the same handshake in every
 * repeat of a server but not of another: the tables also give the counts without GC, which compare
 * the code paths; CPU time has the collections amortized.
 */
async function gcOf(dump: string): Promise<number> {
  const { stdout } = await run(
    'callgrind_annotate',
    ['--inclusive=no', '--threshold=100', dump],
    { maxBuffer: 256 * 1024 * 1024 },
  );
  let total = 0;
  for (const line of stdout.split('\n')) {
    const cost = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line);
    if (cost && !cost[2].startsWith('PROGRAM TOTALS') && GC.test(cost[2]))
      total += Number(cost[1].replaceAll(',', ''));
  }
  return total;
}

async function callgrindRun(
  load: Child,
  spec: ServerSpec,
  workload: Workload,
  dir: string,
): Promise<Row> {
  const name = `${workload.id}.${spec.id}`;
  const out = join(dir, `${name}.%p`);
  const server = new Child(join('servers', spec.file), 0, {
    args: argsFor(spec, workload),
    wrapper: [
      'valgrind',
      '--tool=callgrind',
      '--instr-atstart=no',
      `--callgrind-out-file=${out}`,
      `--log-file=${join(dir, `${name}.log`)}`,
    ],
    nodeArgs: CALLGRIND_NODE_ARGS,
  });
  try {
    const port: number = await server.ready;
    const pid = String(server.process.pid);
    const counted = await (workload.upgrade
      ? countHandshakes(load, port, pid, spec, workload)
      : countEchoes(load, port, pid, spec, workload));
    await run('callgrind_control', ['--dump', pid]);
    // the first dump: `.1`; its `totals:` line holds the instructions counted (its `summary:` line
    // is 0 once instrumentation is off)
    const dump = `${out.replace('%p', pid)}.1`;
    const totals = /^totals: (\d+)/m.exec(readFileSync(dump, 'utf8'));
    if (!totals) throw new Error(`No totals in the callgrind dump of ${name}`);
    const gc = await gcOf(dump);
    return {
      instructionsPerHandshake: Number(totals[1]) / counted,
      withoutGc: (Number(totals[1]) - gc) / counted,
      gcPerHandshake: gc / counted,
    };
  } finally {
    await server.stop();
  }
}

/** HANDSHAKE_WARMUP uncounted handshakes, then HANDSHAKES counted: how many were counted. */
async function countHandshakes(
  load: Child,
  port: number,
  pid: string,
  spec: ServerSpec,
  workload: Workload,
): Promise<number> {
  const [path, headers] = workload.upgrade!(spec);
  const handshakes = (count: number) =>
    load.ask(
      handshakesCommand(port, spec, path, headers, count),
      Math.max(120, count / 5),
    );
  await handshakes(HANDSHAKE_WARMUP);
  await run('callgrind_control', ['--instr=on', pid]);
  await handshakes(HANDSHAKES);
  await run('callgrind_control', ['--instr=off', pid]);
  return HANDSHAKES;
}

/**
 * `--callgrind --workloads=echo-1000-text`: the echo's closed loops run ECHO_WARMUP_MS uncounted
 * (V8 compiles the path meanwhile), then ECHO_COUNT_MS counted: how many messages were echoed
 * while counting. The count of instructions starts a little before the count of messages and
 * ends a little after it, by the same few ms for every server.
 */
async function countEchoes(
  load: Child,
  port: number,
  pid: string,
  spec: ServerSpec,
  workload: Workload,
): Promise<number> {
  const [connections, body] = workload.id.split('-').slice(1) as [
    string,
    'text' | 'json',
  ];
  await load.ask({
    cmd: 'echo',
    port,
    path: spec.paths[body]!,
    connections: Number(connections),
    message: messageFor(spec, body),
    protocol: protocolOf(spec),
    client: 'lean',
  } satisfies LoadCommand);
  await wait(ECHO_WARMUP_MS);
  await run('callgrind_control', ['--instr=on', pid]);
  await load.ask({ cmd: 'mark' } satisfies LoadCommand);
  await wait(ECHO_COUNT_MS);
  const report = await load.ask({ cmd: 'report' } satisfies LoadCommand);
  await run('callgrind_control', ['--instr=off', pid]);
  await load.ask({ cmd: 'close' } satisfies LoadCommand);
  return report.messages;
}

/** ms of uncounted, then counted, echoes under callgrind (Node runs 4× slower uncounted, 50× counted). */
const ECHO_WARMUP_MS = 20_000;
const ECHO_COUNT_MS = 10_000;

async function callgrindMain() {
  const valgrind = spawnSync('valgrind', ['--version'], { encoding: 'utf8' });
  if (valgrind.status !== 0) throw new Error('valgrind is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'bench-callgrind-'));
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, ${valgrind.stdout.trim()}`;
  console.log(
    `# nestjs-ws-endpoints: instructions per handshake (callgrind)\n\n${machine}; user-space instructions of the server process (every thread), ${HANDSHAKES} handshakes (100 in flight) counted after ${HANDSHAKE_WARMUP} uncounted ones, a fresh server process for each; ${REPEATS} repeat(s), medians. Dumps, for callgrind_annotate: ${dir}\n`,
  );
  const load = new Child('load/load.js', 1);
  await load.ready;
  const servers = selectServers(CALLGRIND_SERVERS);
  const workloads = WORKLOADS.filter((w) =>
    (onlyWorkloads ?? CALLGRIND_WORKLOADS).includes(w.id),
  );
  const results = new Map<string, Results>(
    workloads.map((w) => [w.id, new Map()]),
  );
  for (let repeat = 0; repeat < REPEATS; repeat++) {
    for (const workload of workloads) {
      for (const spec of servers.filter((s) => workload.applies(s))) {
        const row = await callgrindRun(load, spec, workload, dir);
        const rows = results.get(workload.id)!;
        rows.set(spec.id, [...(rows.get(spec.id) ?? []), row]);
        process.stderr.write(
          `  ${workload.id} ${spec.id}: ${fmt(row.instructionsPerHandshake / 1000, 1)}k instructions a ${workload.upgrade ? 'handshake' : 'message'}, ${fmt(row.gcPerHandshake / 1000, 1)}k of them GC\n`,
        );
      }
    }
  }
  for (const workload of workloads) {
    console.log(
      `${table(
        workload,
        results.get(workload.id)!,
        [
          ['instructionsPerHandshake', 'instructions/handshake', 0],
          ['withoutGc', 'without GC', 0],
        ],
        `${workload.title.replace(`${HANDSHAKES} handshakes`, 'Handshakes')}: instructions`,
      )}\n`,
    );
  }
  const file = writeJson('-callgrind', {
    machine,
    handshakes: HANDSHAKES,
    warmup: HANDSHAKE_WARMUP,
    repeats: REPEATS,
    dumps: dir,
    results: Object.fromEntries(
      [...results].map(([k, v]) => [k, Object.fromEntries(v)]),
    ),
    ratios: Object.fromEntries(
      workloads.map((w) => [w.id, ratiosOf(w, results.get(w.id)!)]),
    ),
  });
  console.log(`JSON: ${file}`);
  stopAll();
}

(callgrind ? callgrindMain() : main()).catch((error) => {
  console.error(error);
  process.exitCode = 1;
  stopAll();
});
