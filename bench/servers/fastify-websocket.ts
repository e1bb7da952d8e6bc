// f. @fastify/websocket.
import websocket from '@fastify/websocket';
import Fastify from 'fastify';
import { serve } from './serve';

async function main() {
  const app = Fastify();
  await app.register(websocket, { options: { maxPayload: 1024 * 1024 } });
  app.register(async (scope) => {
    scope.get('/text', { websocket: true }, (socket) => {
      socket.on('message', (data: Buffer) => socket.send(data.toString()));
    });
    scope.get('/json', { websocket: true }, (socket) => {
      socket.on('message', (data: Buffer) =>
        socket.send(JSON.stringify(JSON.parse(data.toString()))),
      );
    });
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  serve((app.server.address() as { port: number }).port);
}
void main();
