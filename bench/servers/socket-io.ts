// e. Socket.IO 4, websocket transport.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { serve } from './serve';

const server = createServer();
const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
});
io.on('connection', (socket) =>
  socket.on('echo', (data: unknown) => socket.emit('echo', data)),
);
server.listen(0, '127.0.0.1', () =>
  serve((server.address() as { port: number }).port),
);
