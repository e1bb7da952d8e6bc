// One message to a group of many sockets in one process: the library's `Broadcaster`
// (`broadcaster.to(group).send(message)`, bench/servers/groups.ts) against raw ws looping over
// the same sockets (`JSON.stringify` once, then `ws.send(s)` for each,
// bench/servers/raw-ws-groups.ts). Each server has a load generator of its own
// (bench/load/groups-load.ts) that holds every member's connection: the first of them sends a
// trigger, the server broadcasts, and the next trigger goes once every member has the message
// (so no member falls behind and none is closed as a slow consumer). The two servers take turns,
// a batch of broadcasts each, so that the machine's drift weighs on both alike.
import type { BroadcastTimes, GroupsLoadCommand } from '../load/groups-load';
import type { BenchProcess } from '../reliable';
import { fmt, median } from '../stats';
import { cpuOf, type GroupsBench, type GroupsPart, until } from './part';

/** Ours ÷ raw ws, server CPU per broadcast. */
const GOAL = 1.2;

const SERVERS = [
  {
    id: 'raw',
    label: 'a. raw ws, a loop over the sockets',
    file: 'raw-ws-groups.js',
  },
  { id: 'ours', label: 'b. Broadcaster.to(group).send()', file: 'groups.js' },
] as const;
type ServerId = (typeof SERVERS)[number]['id'];

/** One server's figures in one repeat. */
type BroadcastRow = Record<string, number>;

/** The figures given as ours ÷ raw ws (the median of each repeat's ratio). */
const RATIOED = [
  'serverUsPerBroadcast',
  'userUsPerBroadcast',
  'systemUsPerBroadcast',
  'sendUsPerBroadcast',
  'allMs',
] as const;
type Ratios = Record<(typeof RATIOED)[number], number>;

interface Settings {
  members: number;
  /** Unmeasured broadcasts of each server, before its measured ones. */
  warmup: number;
  /** Measured broadcasts of each server in a repeat, in batches of `batch`. */
  broadcasts: number;
  batch: number;
}

/** A server of the run, with the load generator that holds its members. */
interface Pair {
  server: BenchProcess;
  port: number;
  load: BenchProcess;
}

export const broadcastPart: GroupsPart = {
  id: 'groups-broadcast',
  async run(bench) {
    const settings: Settings = {
      members: bench.quick ? 1_000 : 10_000,
      warmup: bench.quick ? 5 : 20,
      broadcasts: bench.quick ? 20 : 100,
      batch: bench.quick ? 5 : 10,
    };
    const children = SERVERS.map((spec) => ({
      server: bench.start(spec.file),
      load: bench.startLoad('groups-load.js'),
    }));
    try {
      const pairs: Pair[] = await Promise.all(
        children.map(async ({ server, load }) => {
          await load.ready;
          return { server, load, port: (await server.ready) as number };
        }),
      );
      const rows: Record<ServerId, BroadcastRow[]> = { raw: [], ours: [] };
      for (let repeat = 0; repeat < bench.repeats; repeat++) {
        const run = await broadcastRun(pairs, settings);
        for (const [index, spec] of SERVERS.entries()) {
          const row = run[index];
          rows[spec.id].push(row);
          bench.log(
            `groups-broadcast ${spec.id}: server ${fmt(row.serverUsPerBroadcast, 0)} µs a broadcast (user ${fmt(row.userUsPerBroadcast, 0)}, ${fmt(row.sendUsPerBroadcast, 0)} in send), all received after ${fmt(row.allMs, 2)} ms, ${fmt(row.serializations, 2)} toJSON a broadcast`,
          );
        }
      }
      const ratios = Object.fromEntries(
        RATIOED.map((key) => [
          key,
          median(
            rows.ours.map((row, repeat) => row[key] / rows.raw[repeat][key]),
          ),
        ]),
      ) as Ratios;
      const json = { settings, goal: GOAL, rows, ratios };
      return {
        markdown: report(bench, settings, rows, ratios),
        json,
        summary: summary(settings, rows, ratios),
      };
    } finally {
      await Promise.all(
        children.flatMap(({ server, load }) => [server.stop(), load.stop()]),
      );
    }
  },
};

/** What one server's measured batches add up to. */
interface Tally {
  user: number;
  system: number;
  clientCpuUs: number;
  times: Pick<BroadcastTimes, 'firstMs' | 'halfMs' | 'allMs'>;
  payloadBytes: number;
}

/**
 * One repeat: `members` connections to each server's /member; once they are all in its group,
 * `warmup` broadcasts unmeasured on each, then batches of `batch` measured broadcasts, the
 * servers in turn (the first of a round alternating) until each has had `broadcasts`: for each
 * batch, the server process's CPU time from before the first trigger to after the last member
 * had the last message, and the load generator's times from each trigger to the first, the
 * middle and the last member's copy; the CPU time and wall time of each `send`, as the server
 * measured it around the call. Then the connections close, and the repeat ends once neither
 * server has a member left (so that the next repeat does not share the core with these closes).
 */
async function broadcastRun(
  pairs: Pair[],
  { members, warmup, broadcasts, batch }: Settings,
): Promise<BroadcastRow[]> {
  const seconds = Math.max(120, members / 50);
  const broadcastBatch = (load: BenchProcess, count: number) =>
    load.ask<BroadcastTimes>(
      { cmd: 'broadcasts', count } satisfies GroupsLoadCommand,
      seconds,
    );
  for (const { server, port, load } of pairs) {
    await load.ask(
      {
        cmd: 'open',
        port,
        path: '/member',
        connections: members,
      } satisfies GroupsLoadCommand,
      seconds,
    );
    await until(server, (m) => m.members === members, `${members} members`);
  }
  for (const { server, load } of pairs) {
    await broadcastBatch(load, warmup);
    await server.ask({ ask: 'reset' });
  }
  const tallies: Tally[] = pairs.map(() => ({
    user: 0,
    system: 0,
    clientCpuUs: 0,
    times: { firstMs: [], halfMs: [], allMs: [] },
    payloadBytes: 0,
  }));
  for (let round = 0; round * batch < broadcasts; round++) {
    const count = Math.min(batch, broadcasts - round * batch);
    const order = round % 2 ? [...pairs.keys()].reverse() : [...pairs.keys()];
    for (const index of order) {
      const { server, load } = pairs[index];
      const tally = tallies[index];
      const before = await cpuOf(server);
      const times = await broadcastBatch(load, count);
      const after = await cpuOf(server);
      tally.user += after.user - before.user;
      tally.system += after.system - before.system;
      tally.clientCpuUs += times.clientCpuUs;
      tally.times.firstMs.push(...times.firstMs);
      tally.times.halfMs.push(...times.halfMs);
      tally.times.allMs.push(...times.allMs);
      tally.payloadBytes = times.payloadBytes;
    }
  }
  const rows: BroadcastRow[] = [];
  for (const [index, { server, load }] of pairs.entries()) {
    const counters = await server.ask<{
      broadcasts: number;
      lost: number;
      serializations: number;
      loopCpuUs: number[];
      loopMs: number[];
    }>({ ask: 'counters' });
    await load.ask({ cmd: 'close' } satisfies GroupsLoadCommand);
    if (counters.broadcasts !== broadcasts || counters.lost) {
      throw new Error(
        `${broadcasts} broadcasts triggered, the server counted ${counters.broadcasts}, ${counters.lost} of them lost`,
      );
    }
    const { user, system, clientCpuUs, times, payloadBytes } = tallies[index];
    rows.push({
      serverUsPerBroadcast: (user + system) / broadcasts,
      userUsPerBroadcast: user / broadcasts,
      systemUsPerBroadcast: system / broadcasts,
      nsPerMember: ((user + system) / broadcasts / members) * 1000,
      sendUsPerBroadcast: median(counters.loopCpuUs),
      sendMs: median(counters.loopMs),
      firstMs: median(times.firstMs),
      halfMs: median(times.halfMs),
      allMs: median(times.allMs),
      allMsMax: Math.max(...times.allMs),
      clientUsPerBroadcast: clientCpuUs / broadcasts,
      serializations: counters.serializations / counters.broadcasts,
      payloadBytes,
    });
  }
  for (const { server } of pairs) {
    await until(server, (m) => m.members === 0, 'no member left');
  }
  return rows;
}

function report(
  bench: GroupsBench,
  settings: Settings,
  rows: Record<ServerId, BroadcastRow[]>,
  ratios: Ratios,
): string {
  const members = settings.members.toLocaleString('en');
  const lines = [
    `### Groups: one message to a group of ${members} sockets`,
    '',
    `One server process each, with ${members} lean connections from a load generator process of its own (the servers on one core, the load generators on the other), all in one group; each broadcast sends a new ${rows.raw[0]?.payloadBytes ?? 100}-byte JSON object whose \`toJSON\` counts its calls. The first connection sends a trigger, the server broadcasts, the next trigger goes once every member has the message; ${settings.warmup} broadcasts unmeasured on each server, then ${settings.broadcasts} measured, the servers taking turns by batches of ${settings.batch}; ${bench.repeats} repeat(s), medians; ×raw the median of each repeat's ratio. Server CPU: the server process's CPU time over the measured broadcasts ÷ broadcasts (all it did: the trigger, the sends, the writes' completions, GC), and its user and system parts (system: the kernel's, where each write on loopback also delivers the bytes to the receiving socket). In send: \`process.cpuUsage()\` around the awaited \`send\` (raw: around \`JSON.stringify\` and the loop), median. Received: ms from the trigger to the first, the middle and the last member's copy, on the load generator's clock (it reads the ${members} copies on one core, which bounds these times). toJSON: calls per broadcast. Every member had every broadcast (the load generator waits for each copy), and none was lost (\`send\` resolved \`true\`).`,
    '',
    '| server | server µs/broadcast | ×raw | user µs | ×raw | system µs | ×raw | ns/member | in send µs | ×raw | first ms | half ms | all ms | ×raw | slowest all ms | load µs/broadcast | toJSON/broadcast |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const spec of SERVERS) {
    const of = (key: string) => median(rows[spec.id].map((row) => row[key]));
    const ratio = (key: keyof typeof ratios) =>
      spec.id === 'raw' ? '1.00' : `**${fmt(ratios[key], 2)}**`;
    lines.push(
      `| ${spec.label} | ${fmt(of('serverUsPerBroadcast'), 0)} | ${ratio('serverUsPerBroadcast')} | ${fmt(of('userUsPerBroadcast'), 0)} | ${ratio('userUsPerBroadcast')} | ${fmt(of('systemUsPerBroadcast'), 0)} | ${ratio('systemUsPerBroadcast')} | ${fmt(of('nsPerMember'), 0)} | ${fmt(of('sendUsPerBroadcast'), 0)} | ${ratio('sendUsPerBroadcast')} | ${fmt(of('firstMs'), 2)} | ${fmt(of('halfMs'), 2)} | ${fmt(of('allMs'), 2)} | ${ratio('allMs')} | ${fmt(of('allMsMax'), 2)} | ${fmt(of('clientUsPerBroadcast'), 0)} | ${fmt(of('serializations'), 2)} |`,
    );
  }
  return lines.join('\n');
}

function summary(
  settings: Settings,
  rows: Record<ServerId, BroadcastRow[]>,
  ratios: Ratios,
) {
  const of = (id: ServerId, key: string) =>
    median(rows[id].map((row) => row[key]));
  const members = settings.members.toLocaleString('en');
  return [
    {
      measure: `Server CPU per broadcast to ${members} members, ours ÷ raw ws`,
      value: `**${fmt(ratios.serverUsPerBroadcast, 2)}×** (${fmt(of('ours', 'serverUsPerBroadcast'), 0)} against ${fmt(of('raw', 'serverUsPerBroadcast'), 0)} µs); user ${fmt(ratios.userUsPerBroadcast, 2)}×, system ${fmt(ratios.systemUsPerBroadcast, 2)}×, in send ${fmt(ratios.sendUsPerBroadcast, 2)}×`,
      goal: `≤ ${GOAL}×`,
    },
    {
      measure: `Trigger → last of ${members} members received, ours ÷ raw ws`,
      value: `${fmt(ratios.allMs, 2)}× (${fmt(of('ours', 'allMs'), 1)} against ${fmt(of('raw', 'allMs'), 1)} ms)`,
    },
    {
      measure: 'Serializations (`toJSON` calls) per broadcast',
      value: `**${fmt(of('ours', 'serializations'), 2)}** (raw ws ${fmt(of('raw', 'serializations'), 2)})`,
      goal: '1',
    },
  ];
}
