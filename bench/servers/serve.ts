// Shared by every benchmark server: answers the harness over IPC with its CPU time and memory
// (and a server's own queries), and says when it listens.

/** What the harness asks a server for: 'usage', 'memory', or one of the server's own queries. */
export type ServerQuery = { id: number; ask: string; [field: string]: unknown };

/** A query of a server's own: its answer, from the query's fields. */
export type QueryHandler = (query: ServerQuery) => object | Promise<object>;

/**
 * Reports `port` to the harness, then answers its queries until it is killed: 'usage' and
 * 'memory', and those of `queries`.
 */
export function serve(
  port: number,
  queries: Record<string, QueryHandler> = {},
): void {
  process.on('message', (query: ServerQuery) => {
    if (query.ask === 'usage') {
      process.send!({ id: query.id, cpu: process.cpuUsage() });
    } else if (query.ask === 'memory') {
      // the thorough collection V8 makes before it gives up on memory: it also shrinks the young
      // generation, which grows with the allocation rate of the handshakes and would otherwise
      // count as memory the connections hold
      global.gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
      const { rss, heapUsed } = process.memoryUsage();
      process.send!({ id: query.id, rss, heapUsed });
    } else {
      const handler = Object.hasOwn(queries, query.ask)
        ? queries[query.ask]
        : () => Promise.reject(new Error(`Unknown query ${query.ask}`));
      Promise.resolve()
        .then(() => handler(query))
        .then(
          (result) => process.send!({ id: query.id, result }),
          (error: Error) =>
            process.send!({ id: query.id, error: String(error?.message) }),
        );
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
