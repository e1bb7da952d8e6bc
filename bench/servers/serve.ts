// Shared by every benchmark server: answers the harness over IPC with its CPU time and memory,
// and says when it listens.

/** What the harness asks a server for. */
export type ServerQuery = { id: number; ask: 'usage' | 'memory' };

/** Reports `port` to the harness, then answers its queries until it is killed. */
export function serve(port: number): void {
  process.on('message', (query: ServerQuery) => {
    if (query.ask === 'usage') {
      process.send!({ id: query.id, cpu: process.cpuUsage() });
    } else {
      // the thorough collection V8 makes before it gives up on memory: it also shrinks the young
      // generation, which grows with the allocation rate of the handshakes and would otherwise
      // count as memory the connections hold
      global.gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
      const { rss, heapUsed } = process.memoryUsage();
      process.send!({ id: query.id, rss, heapUsed });
    }
  });
  // a clean exit, so that --cpu-prof writes its profile
  process.on('SIGINT', () => process.exit(0));
  process.send!({ ready: port });
}

/** The job every server does: text back as it came, JSON parsed and sent back as JSON. */
export const AUTH_HEADER = 'Bearer bench-token';

/**
 * `--routes=100`: the plain HTTP GET routes (`/r0`…`/r99`) that a server with an HTTP router
 * registers beside its WebSocket routes, as a real app has; none by default.
 */
const ROUTES = Number(
  process.argv.find((arg) => arg.startsWith('--routes='))?.split('=')[1] ?? 0,
);
export const routePaths = (): string[] =>
  Array.from({ length: ROUTES }, (_, index) => `/r${index}`);
