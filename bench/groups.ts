// Groups and broadcast against raw ws measured in the same run (run.ts runs it after the other
// workloads; `npm run bench -- --workloads=groups` alone, `--workloads=groups-broadcast` one
// part): one message to a group of 10,000 sockets (bench/groups/broadcast.ts), the heap of a
// group membership (bench/groups/membership-memory.ts), delivery latency across three instances
// over Redis and the cost of a presence entry (bench/groups/cluster.ts). A part is a `GroupsPart`
// (bench/groups/part.ts) in PARTS: it starts its own server and load processes, and gives back
// its section of the report, its JSON and its rows of the summary.
import { broadcastPart } from './groups/broadcast';
import { clusterPart } from './groups/cluster';
import { membershipMemoryPart } from './groups/membership-memory';
import type { GroupsBench, GroupsPart, SummaryRow } from './groups/part';

export type { GroupsBench } from './groups/part';

/** In the order they run. */
const PARTS: GroupsPart[] = [broadcastPart, membershipMemoryPart, clusterPart];

/** Whether a `--workloads` id is the groups benchmark's: `groups` (every part) or a part's id. */
export const isGroupsWorkload = (id: string): boolean =>
  id === 'groups' || PARTS.some((part) => part.id === id);

/** Runs the parts that `workloads` names (`groups`: all), and returns the markdown and the JSON. */
export async function groupsBenchmark(
  bench: GroupsBench,
  workloads: string[],
): Promise<{ markdown: string; json: object }> {
  const parts = PARTS.filter(
    (part) => workloads.includes('groups') || workloads.includes(part.id),
  );
  const sections: string[] = [];
  const summary: SummaryRow[] = [];
  const json: Record<string, object> = {};
  for (const part of parts) {
    const result = await part.run(bench);
    sections.push(result.markdown);
    summary.push(...result.summary);
    json[part.id] = result.json;
  }
  const markdown = [
    '### Groups: summary',
    '',
    '| measure | value | goal |',
    '|---|---|---|',
    ...summary.map(
      (row) => `| ${row.measure} | ${row.value} | ${row.goal ?? ''} |`,
    ),
    '',
    sections.join('\n\n'),
  ].join('\n');
  return { markdown, json };
}
