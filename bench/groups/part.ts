// What every part of the groups benchmark (bench/groups.ts) is given and gives back, and the
// helpers they share: a poll of a server's query, the server's CPU time, its heap after forced
// collections.
import { setTimeout as wait } from 'node:timers/promises';
import type { BenchProcess } from '../reliable';

/** What the harness (run.ts) lends the groups benchmark: its processes are `P`. */
export interface GroupsBench<P extends BenchProcess = BenchProcess> {
  quick: boolean;
  repeats: number;
  /** Starts `bench/servers/<file>` on the server's core; `ready` resolves with its port. */
  start(file: string, nodeArgs?: string[]): P;
  /** Starts `bench/load/<file>` on the load generator's core. */
  startLoad(file: string): P;
  /** Progress, one line a run. */
  log(line: string): void;
}

/** A row of the summary table: what was measured, the figure, the goal if there is one. */
export interface SummaryRow {
  measure: string;
  value: string;
  goal?: string;
}

/** What a part gives back: its section of the report, its JSON, its rows of the summary. */
export interface PartResult {
  markdown: string;
  json: object;
  summary: SummaryRow[];
}

/**
 * One part of the groups benchmark, run by `--workloads=<id>` or with all of them by
 * `--workloads=groups`; listed in PARTS (bench/groups.ts), which is all a new part needs. Each
 * starts the server and load processes it needs (bench/servers/groups.ts and raw-ws-groups.ts,
 * bench/load/groups-load.ts, or its own) and stops them; `bench.quick` asks for a smoke run of a
 * few seconds.
 */
export interface GroupsPart {
  /** `groups-<what>`. */
  id: string;
  run(bench: GroupsBench): Promise<PartResult>;
}

/** The server's CPU time so far, µs: user (its JavaScript, V8, libuv) and system (the kernel's). */
export async function cpuOf(server: BenchProcess): Promise<NodeJS.CpuUsage> {
  const { cpu } = await server.ask<{ cpu: NodeJS.CpuUsage }>({ ask: 'usage' });
  return cpu;
}

/** The server's group counts (bench/servers/group-probe.ts's 'members' query). */
export interface Members {
  /** Sessions in the broadcast's group. */
  members: number;
  /** Sessions of /session. */
  sessions: number;
}

/**
 * Resolves once the server's counts pass `test` (sessions join as their handlers start, a
 * little after the handshake; they leave after the close): throws after `seconds`.
 */
export async function until(
  server: BenchProcess,
  test: (members: Members) => boolean,
  what: string,
  seconds = 120,
): Promise<void> {
  const deadline = performance.now() + seconds * 1000;
  for (;;) {
    const members = await server.ask<Members>({ ask: 'members' });
    if (test(members)) return;
    if (performance.now() > deadline) {
      throw new Error(
        `Expected ${what} within ${seconds} s, the server has ${JSON.stringify(members)}`,
      );
    }
    await wait(20);
  }
}

/**
 * Node's options of a server whose heap is measured: V8 drops the bytecode of functions that
 * have not run for a few collections, and each measure collects (see bench/reliable.ts).
 */
export const MEMORY_NODE_ARGS = ['--no-flush-bytecode'];

/** ms between the two collections of one measure, as bench/reliable.ts waits. */
const SETTLE_MS = 100;

/** The server's heap in bytes after V8's last-resort collection, twice a turn apart. */
export async function heapOf(server: BenchProcess): Promise<number> {
  await server.ask({ ask: 'memory' });
  await wait(SETTLE_MS);
  const { heapUsed } = await server.ask<{ heapUsed: number }>({
    ask: 'memory',
  });
  return heapUsed;
}
