// What the two servers of the groups benchmark (bench/groups.ts) share: the broadcast message,
// which counts its serializations; the server's own measure of each broadcast; the group names
// of the memory run; and the queries the harness asks them.
import type { QueryHandler } from './serve';

/** The group that /member joins and that the trigger broadcasts to. */
export const GROUP = 'g';

/** Times its `toJSON` ran: once a broadcast when the message is serialized once. */
let serializations = 0;

/** The JSON of a message with seq 100000, without its text: the text pads it to 100 bytes. */
const BARE = JSON.stringify({
  type: 'tick',
  group: GROUP,
  seq: 100000,
  text: '',
});
const TEXT = 'x'.repeat(100 - BARE.length);
let made = 0;

/** The message of one broadcast, 100 bytes of JSON (a new object, serialized by the sender). */
export class BroadcastMessage {
  readonly type = 'tick';
  readonly group = GROUP;
  /** Six digits, so that every message has the same length. */
  readonly seq = 100000 + (made++ % 900000);
  readonly text = TEXT;

  toJSON() {
    serializations++;
    return {
      type: this.type,
      group: this.group,
      seq: this.seq,
      text: this.text,
    };
  }
}

/** The server's measure of the broadcasts since the last 'reset'. */
const measured = {
  broadcasts: 0,
  /** Broadcasts whose `send` resolved `false`: the library's word that it lost them. */
  lost: 0,
  /** The CPU time (µs) and wall time (ms) from the send's start to its end, broadcast by broadcast. */
  loopCpuUs: [] as number[],
  loopMs: [] as number[],
};

/**
 * Runs one broadcast, `send`, and records its CPU time and wall time: process.cpuUsage() and
 * performance.now() on either side of it, awaited (the library's `send` resolves once the
 * backplane has the message: `true`, or `false` if it was lost).
 */
export async function timedBroadcast(
  send: (message: BroadcastMessage) => unknown,
): Promise<void> {
  const message = new BroadcastMessage();
  const startedAt = performance.now();
  const cpu = process.cpuUsage();
  const sent = await send(message);
  const used = process.cpuUsage(cpu);
  measured.loopMs.push(performance.now() - startedAt);
  measured.loopCpuUs.push(used.user + used.system);
  measured.broadcasts++;
  if (sent === false) measured.lost++;
}

/**
 * The K group names a session joins in the memory run: `shared`, the same K rooms for every
 * session; otherwise K groups of its own (as `user:<id>` groups are). Each name a new string, as
 * an application builds it from a route parameter.
 */
export function groupNames(
  session: number,
  count: number,
  shared: boolean,
): string[] {
  return Array.from({ length: count }, (_, k) =>
    shared ? `room:${k}` : `own:${session}:${k}`,
  );
}

/**
 * The queries of both servers: 'members' (sessions in GROUP, and sessions of /session),
 * 'reset' and 'counters' (the broadcasts measured since), and 'join' (each /session session in
 * no group yet joins K groups).
 */
export function groupQueries(server: {
  members(): number;
  sessions(): number;
  /** Makes each session of /session that is in no group join the groups `names(index)`. */
  join(names: (index: number) => string[]): Promise<number>;
}): Record<string, QueryHandler> {
  return {
    members: () => ({ members: server.members(), sessions: server.sessions() }),
    reset: () => {
      measured.broadcasts = measured.lost = serializations = 0;
      measured.loopCpuUs = [];
      measured.loopMs = [];
      return {};
    },
    counters: () => ({ ...measured, serializations }),
    join: async (query) => {
      const count = Number(query.groups);
      const shared = query.shared === true;
      const memberships = await server.join((index) =>
        groupNames(index, count, shared),
      );
      return { memberships };
    },
  };
}
