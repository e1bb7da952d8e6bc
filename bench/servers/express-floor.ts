// g. A reference, not a competitor: the least an upgrade routed through the app's HTTP pipeline
// costs. Nest's Express app with its body parsers, one route per path that hands the socket to
// ws; no Nest execution context, no session. Our endpoints run every upgrade through this
// pipeline, so that middleware and guards see it as an HTTP request.
//
// With `--routes=100`, the app also has 100 plain GET routes, and serves each WebSocket path twice:
// `/text` and `/guarded` registered before them, the order our module gives its own routes on
// Express (`routeFirst`), so that an upgrade never tries them: the floor of our endpoint; and
// `/walked/text`, `/walked/guarded` after them (g2.), as a plain Express app that adds its
// WebSocket route last, whose upgrades Express matches against the 100 routes first.
import { ExpressAdapter } from '@nestjs/platform-express';
import type { Express, Request, Response } from 'express';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { AUTH_HEADER, routePaths, serve } from './serve';

const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
const upgrades = new WeakMap<IncomingMessage, [Duplex, Buffer]>();

function accept(request: Request, response: Response) {
  const [socket, head] = upgrades.get(request)!;
  wss.handleUpgrade(request, socket, head, (ws) => {
    response.detachSocket(socket as never);
    ws.on('message', (data: Buffer, isBinary) =>
      ws.send(data, { binary: isBinary }),
    );
    ws.on('error', () => undefined);
  });
}

const adapter = new ExpressAdapter();
adapter.registerParserMiddleware();
const app = adapter.getInstance<Express>();
const guarded = (request: Request, response: Response) => {
  if (request.headers.authorization === AUTH_HEADER) accept(request, response);
  else response.status(401).end();
};
app.get('/text', accept);
app.get('/guarded', guarded);
const routes = routePaths();
for (const path of routes)
  app.get(path, (_request, response) => response.send('ok'));
if (routes.length) {
  app.get('/walked/text', accept);
  app.get('/walked/guarded', guarded);
}

const server = createServer(app);
server.on('upgrade', (request: IncomingMessage, socket: Duplex, head) => {
  upgrades.set(request, [socket, head]);
  const response = new ServerResponse(request);
  response.assignSocket(socket as never);
  queueMicrotask(() => app(request, response));
});
server.listen(0, '127.0.0.1', () =>
  serve((server.address() as { port: number }).port),
);
