// g. A reference, not a competitor: the least an upgrade routed through the app's HTTP pipeline
// costs. Nest's Express app with its body parsers, one route per path that hands the socket to
// ws; no Nest execution context, no session. Our endpoints run every upgrade through this
// pipeline, so that middleware and guards see it as an HTTP request.
import { ExpressAdapter } from '@nestjs/platform-express';
import type { Express, Request, Response } from 'express';
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { AUTH_HEADER, serve } from './serve';

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
app.get('/text', accept);
app.get('/guarded', (request, response) => {
  if (request.headers.authorization === AUTH_HEADER) accept(request, response);
  else response.status(401).end();
});

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
