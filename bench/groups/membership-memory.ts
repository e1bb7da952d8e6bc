// The heap a group membership holds: N sessions each joined to K groups, minus the same
// sessions in no group, ÷ N × K; ours (`socket.join`, bench/servers/groups.ts) against raw ws
// with groups kept by hand (bench/servers/raw-ws-groups.ts: a Map of group → Set of sockets,
// and each socket's Set of groups).
import type { GroupsLoadCommand } from '../load/groups-load';
import type { BenchProcess } from '../reliable';
import { fmt } from '../stats';
import {
  type GroupsBench,
  type GroupsPart,
  heapOf,
  MEMORY_NODE_ARGS,
  until,
} from './part';

const SERVERS = [
  {
    id: 'raw',
    label: 'a. raw ws, groups kept by hand',
    file: 'raw-ws-groups.js',
  },
  { id: 'ours', label: 'b. socket.join()', file: 'groups.js' },
] as const;
type ServerId = (typeof SERVERS)[number]['id'];

/** Which groups a session joins: the same K as every other session, or K of its own. */
const CASES = [
  {
    id: 'shared',
    shared: true,
    label: (k: number) => `${k} groups shared by every session (rooms)`,
  },
  {
    id: 'own',
    shared: false,
    label: (k: number) => `${k} groups of its own (as \`user:<id>\`)`,
  },
] as const;
type CaseId = (typeof CASES)[number]['id'];

interface Settings {
  sessions: number;
  groups: number;
  warmupSessions: number;
}

interface MemoryRow {
  memberships: number;
  /** The server's heap with the sessions in no group, MiB. */
  heapMiB: number;
  bytesPerMembership: number;
  /** What the K memberships of one session cost together, KiB. */
  kibPerSession: number;
}

/** One case's runs: raw ws's and ours, and ours ÷ raw ws in bytes per membership. */
interface CaseResult {
  id: CaseId;
  label: string;
  rows: Record<ServerId, MemoryRow>;
  ratio: number;
}

export const membershipMemoryPart: GroupsPart = {
  id: 'groups-memory',
  async run(bench) {
    const settings: Settings = {
      sessions: bench.quick ? 1_000 : 10_000,
      groups: bench.quick ? 3 : 10,
      warmupSessions: bench.quick ? 20 : 100,
    };
    // CI's smoke run: the first case only (the second runs the same code with other names)
    const cases = bench.quick ? CASES.slice(0, 1) : CASES;
    const load = bench.startLoad('groups-load.js');
    await load.ready;
    const results: CaseResult[] = [];
    try {
      for (const memoryCase of cases) {
        const rows = {} as Record<ServerId, MemoryRow>;
        for (const spec of SERVERS) {
          rows[spec.id] = await memoryRun(
            bench,
            load,
            spec.file,
            { groups: settings.groups, shared: memoryCase.shared },
            settings,
          );
          bench.log(
            `groups-memory ${memoryCase.id} ${spec.id}: ${fmt(rows[spec.id].bytesPerMembership, 1)} B of heap a membership`,
          );
        }
        results.push({
          id: memoryCase.id,
          label: memoryCase.label(settings.groups),
          rows,
          ratio: rows.ours.bytesPerMembership / rows.raw.bytesPerMembership,
        });
      }
    } finally {
      await load.stop();
    }
    return {
      markdown: report(settings, results),
      json: { settings, nodeArgs: MEMORY_NODE_ARGS, cases: results },
      summary: [
        {
          measure: `Heap per group membership (${settings.sessions.toLocaleString('en')} sessions × ${settings.groups} groups): ${results.map((result) => result.label).join(' · ')}`,
          value: results
            .map(
              ({ rows, ratio }) =>
                `**${fmt(rows.ours.bytesPerMembership, 0)} B** (${fmt(ratio, 2)}× raw ws's ${fmt(rows.raw.bytesPerMembership, 0)} B)`,
            )
            .join(' · '),
        },
      ],
    };
  },
};

/**
 * The server's 'join' query (bench/servers/group-probe.ts): each session of /session in no group
 * yet joins `groups` groups; a part that measures more than memberships adds its own fields.
 */
export interface JoinQuery {
  groups: number;
  shared: boolean;
  [field: string]: unknown;
}

/**
 * In a server process of its own, with MEMORY_NODE_ARGS: `warmupSessions` sessions on /session
 * join first, so that the join path is compiled and its code does not count; then `sessions`
 * more, the heap after forced collections, the 'join' of each of them (the sessions in no group
 * yet), and the heap again.
 */
export async function memoryRun(
  bench: GroupsBench,
  load: BenchProcess,
  file: string,
  query: JoinQuery,
  { sessions, warmupSessions }: Omit<Settings, 'groups'>,
): Promise<MemoryRow> {
  const { groups } = query;
  const server = bench.start(file, MEMORY_NODE_ARGS);
  try {
    const port = (await server.ready) as number;
    const open = async (connections: number, total: number) => {
      await load.ask(
        {
          cmd: 'open',
          port,
          path: '/session',
          connections,
        } satisfies GroupsLoadCommand,
        Math.max(120, connections / 50),
      );
      await until(server, (m) => m.sessions === total, `${total} sessions`);
    };
    const join = () =>
      server.ask<{ memberships: number }>(
        { ...query, ask: 'join' },
        Math.max(120, (sessions * groups) / 10_000),
      );
    await open(warmupSessions, warmupSessions);
    await join();
    await open(sessions, warmupSessions + sessions);
    const before = await heapOf(server);
    const { memberships } = await join();
    const after = await heapOf(server);
    await load.ask({ cmd: 'close' } satisfies GroupsLoadCommand);
    if (memberships !== sessions * groups) {
      throw new Error(
        `${sessions * groups} memberships expected, the server made ${memberships}`,
      );
    }
    return {
      memberships,
      heapMiB: before / 1024 / 1024,
      bytesPerMembership: (after - before) / memberships,
      kibPerSession: (after - before) / sessions / 1024,
    };
  } finally {
    await server.stop();
  }
}

function report(settings: Settings, results: CaseResult[]): string {
  const lines = [
    `### Groups: heap per group membership`,
    '',
    `${settings.sessions.toLocaleString('en')} sessions, each joined to ${settings.groups} groups, in a server process of its own (Node with ${MEMORY_NODE_ARGS.join(' ')}), one run each (heap figures hardly move between runs), after ${settings.warmupSessions} sessions joined as a warm-up: the server's heap after forced collections with the sessions in no group, and once each has joined (group names made per session, as from a route parameter), ÷ memberships. Raw ws keeps groups as an application would by hand: a Map of group → Set of sockets, and a Map of socket → Set of its groups (to leave them on close).`,
    '',
    '| groups of each session | server | heap B/membership | ×raw | KiB/session | heap MiB before |',
    '|---|---|---:|---:|---:|---:|',
  ];
  for (const { label, rows, ratio } of results) {
    for (const spec of SERVERS) {
      const row = rows[spec.id];
      lines.push(
        `| ${label} | ${spec.label} | ${fmt(row.bytesPerMembership, 1)} | ${spec.id === 'raw' ? '1.00' : fmt(ratio, 2)} | ${fmt(row.kibPerSession, 2)} | ${fmt(row.heapMiB, 1)} |`,
      );
    }
  }
  return lines.join('\n');
}
