// A peer in its own process, so that its buffers do not count against the server's memory:
// floods COUNT binary messages of SIZE bytes (each starting with its sequence number) at URL,
// prints the server's first reply and exits.
const WebSocket = require('ws');

const [url, count, size] = [
  process.argv[2],
  Number(process.argv[3]),
  Number(process.argv[4]),
];
const ws = new WebSocket(url);
ws.on('open', () => {
  for (let seq = 0; seq < count; seq++) {
    const message = Buffer.alloc(size);
    message.writeUInt32BE(seq, 0);
    ws.send(message);
  }
});
ws.on('message', (data) => {
  process.stdout.write(Buffer.from(data).toString());
  ws.close();
});
ws.on('close', () => process.exit(0));
ws.on('error', (error) => {
  process.stderr.write(error.message);
  process.exit(1);
});
