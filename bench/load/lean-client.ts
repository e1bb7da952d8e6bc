import { connect, Socket } from 'node:net';

const SOURCE_ADDRESSES = 100;
let opened = 0;

/**
 * A minimal WebSocket client over `net`, so that the load generator costs as little as possible
 * per message: frames are built once (masked with a zero key, which RFC 6455 allows a server to
 * receive) and parsed without copies in the common case of one frame per read.
 */
export class LeanConnection {
  onText: (payload: Buffer) => void = () => undefined;
  private pending: Buffer = Buffer.alloc(0);

  private constructor(readonly socket: Socket) {}

  /** Connects, sends the upgrade request and resolves after the 101. */
  static open(
    port: number,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<LeanConnection> {
    return new Promise((resolve, reject) => {
      // rotating the source address: a run opens more connections than one address has ports in
      // TIME_WAIT's 60 s
      const from = `127.0.0.${1 + (opened++ % SOURCE_ADDRESSES)}`;
      const socket = connect({ port, host: '127.0.0.1', localAddress: from });
      socket.setNoDelay(true);
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.once('connect', () =>
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
        ),
      );
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.off('error', reject);
        if (!head.subarray(0, 12).toString().startsWith('HTTP/1.1 101')) {
          socket.destroy();
          reject(new Error(head.subarray(0, head.indexOf('\r\n')).toString()));
          return;
        }
        const connection = new LeanConnection(socket);
        socket.on('data', (data: Buffer) => connection.read(data));
        socket.on('error', () => undefined);
        resolve(connection);
        // frames that came with the 101 wait until the caller has set onText
        const rest = head.subarray(end + 4);
        if (rest.length) setImmediate(() => connection.read(rest));
      };
      socket.on('data', onData);
      socket.on('error', reject);
    });
  }

  send(frame: Buffer): void {
    this.socket.write(frame);
  }

  close(): void {
    this.socket.destroy();
  }

  private read(data: Buffer): void {
    let buffer = this.pending.length
      ? Buffer.concat([this.pending, data])
      : data;
    for (;;) {
      if (buffer.length < 2) break;
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) break;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) break;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffer.length < offset + length) break;
      const opcode = buffer[0] & 0x0f;
      const payload = buffer.subarray(offset, offset + length);
      buffer = buffer.subarray(offset + length);
      if (opcode === 0x1 || opcode === 0x2) this.onText(payload);
      else if (opcode === 0x9) this.send(frame(payload, 0xa));
    }
    this.pending = buffer.length ? Buffer.from(buffer) : Buffer.alloc(0);
  }
}

/** A masked client frame (zero mask key) carrying `payload`. */
export function frame(payload: Buffer | string, opcode = 0x1): Buffer {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const extended = data.length < 126 ? 0 : data.length < 0x10000 ? 2 : 8;
  const head = Buffer.alloc(2 + extended + 4);
  head[0] = 0x80 | opcode;
  head[1] = 0x80 | (extended === 0 ? data.length : extended === 2 ? 126 : 127);
  if (extended === 2) head.writeUInt16BE(data.length, 2);
  if (extended === 8) head.writeBigUInt64BE(BigInt(data.length), 2);
  return Buffer.concat([head, data]);
}
