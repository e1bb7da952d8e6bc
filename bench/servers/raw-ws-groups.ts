// a. raw ws for the groups benchmark (bench/groups.ts), the limit: the same paths and queries as
// bench/servers/groups.ts, with groups as an application would keep them by hand over ws: a Map
// of group → Set of sockets, and each socket's own Set of groups (to leave them when it closes).
// A broadcast: `const s = JSON.stringify(message); for (const ws of members) ws.send(s)`.
import { createServer } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { GROUP, groupQueries, timedBroadcast } from './group-probe';
import { serve } from './serve';

const groups = new Map<string, Set<WebSocket>>();
const groupsOf = new Map<WebSocket, Set<string>>();
/** The sockets of /session, in the order they came. */
const sessions = new Set<WebSocket>();

function join(ws: WebSocket, group: string): void {
  let members = groups.get(group);
  if (!members) groups.set(group, (members = new Set()));
  members.add(ws);
  let names = groupsOf.get(ws);
  if (!names) groupsOf.set(ws, (names = new Set()));
  names.add(group);
}

function leaveAll(ws: WebSocket): void {
  for (const group of groupsOf.get(ws) ?? []) {
    const members = groups.get(group)!;
    members.delete(ws);
    if (!members.size) groups.delete(group);
  }
  groupsOf.delete(ws);
}

function broadcast(message: object): void {
  const members = groups.get(GROUP);
  if (!members) return;
  const s = JSON.stringify(message);
  for (const ws of members) ws.send(s);
}

const server = createServer();
const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => {
    ws.on('error', () => undefined);
    ws.on('close', () => {
      leaveAll(ws);
      sessions.delete(ws);
    });
    if (request.url === '/member') {
      join(ws, GROUP);
      ws.on('message', () => void timedBroadcast(broadcast));
    } else {
      sessions.add(ws);
    }
  });
});
server.listen(0, '127.0.0.1', () =>
  serve(
    (server.address() as { port: number }).port,
    groupQueries({
      members: () => groups.get(GROUP)?.size ?? 0,
      sessions: () => sessions.size,
      join: async (names) => {
        let index = 0;
        let memberships = 0;
        for (const ws of sessions) {
          if (!groupsOf.has(ws)) {
            for (const name of names(index)) {
              join(ws, name);
              memberships++;
            }
          }
          index++;
        }
        return memberships;
      },
    }),
  ),
);
