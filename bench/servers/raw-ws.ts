// a. raw ws: the limit.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { AUTH_HEADER, serve } from './serve';

const server = createServer();
const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
server.on('upgrade', (request, socket, head) => {
  if (
    request.url === '/guarded' &&
    request.headers.authorization !== AUTH_HEADER
  ) {
    socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => {
    const json = request.url === '/json';
    ws.on('message', (data: Buffer, isBinary) => {
      ws.send(json ? JSON.stringify(JSON.parse(data.toString())) : data, {
        binary: isBinary,
      });
    });
    ws.on('error', () => undefined);
  });
});
server.listen(0, '127.0.0.1', () =>
  serve((server.address() as { port: number }).port),
);
