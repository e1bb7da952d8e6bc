// f. @fastify/websocket; also the floor of our endpoint on Fastify (b2.): both run the upgrade
// through Fastify's router and hooks. `/guarded` checks the bearer token in a preHandler hook,
// Fastify's last step before the route's handler (in which Nest runs our guard). With
// `--routes=100`, the app also has 100 plain GET routes; find-my-way's radix tree does not try
// routes in turn, so their order does not matter.
import websocket from '@fastify/websocket';
import Fastify, { FastifyReply, FastifyRequest } from 'fastify';
import { AUTH_HEADER, routePaths, serve } from './serve';

function tokenCheck(
  request: FastifyRequest,
  reply: FastifyReply,
  done: () => void,
) {
  if (request.headers.authorization === AUTH_HEADER) done();
  else void reply.code(401).send();
}

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
    scope.get(
      '/guarded',
      { websocket: true, preHandler: tokenCheck },
      (socket) => {
        socket.on('message', (data: Buffer) => socket.send(data.toString()));
      },
    );
  });
  for (const path of routePaths()) app.get(path, async () => 'ok');
  await app.listen({ port: 0, host: '127.0.0.1' });
  serve((app.server.address() as { port: number }).port);
}
void main();
