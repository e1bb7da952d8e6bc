// h. A reference, not a competitor: raw ws running each message through the same ValidationPipe
// itself, with no Nest app around it. The least a validated echo costs; what our endpoint adds
// with messages(Dto) is the rest.
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { EchoDto, echoValidationPipe } from './echo.dto';
import { serve } from './serve';

const pipe = echoValidationPipe();
const metadata = { type: 'body', metatype: EchoDto, data: undefined } as const;

const server = createServer();
const wss = new WebSocketServer({ server, maxPayload: 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data: Buffer) => {
    pipe.transform(JSON.parse(data.toString()), metadata).then(
      (dto) => ws.send(JSON.stringify(dto)),
      () => ws.close(1007),
    );
  });
  ws.on('error', () => undefined);
});
server.listen(0, '127.0.0.1', () =>
  serve((server.address() as { port: number }).port),
);
