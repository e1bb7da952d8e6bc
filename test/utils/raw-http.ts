import { connect } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import type { AddressInfo } from 'node:net';

/** A raw HTTP answer: status code, lower-cased headers and body. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends `request` (a raw HTTP request head, for handshakes a real client would not send) and
 * resolves with the answer once the server closes the connection, or, with `closeAfterHead`,
 * once the response head has arrived (for a 101, after which the socket stays open).
 */
export function rawRequest(
  app: INestApplication,
  request: string,
  { closeAfterHead = false } = {},
): Promise<RawResponse> {
  const { port } = app.getHttpServer().address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      if (closeAfterHead && Buffer.concat(chunks).includes('\r\n\r\n'))
        socket.destroy();
    });
    socket.on('error', reject);
    socket.on('close', () =>
      resolve(parse(Buffer.concat(chunks).toString('utf8'))),
    );
  });
}

/** An upgrade request head for `path`, with `headers` replacing or (when null) removing the defaults. */
export function upgradeRequest(
  path: string,
  headers: Record<string, string | null> = {},
): string {
  const all: Record<string, string | null> = {
    Host: 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  const lines = Object.entries(all)
    .filter(([, value]) => value !== null)
    .map(([name, value]) => `${name}: ${value}`);
  return `GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
}

function parse(text: string): RawResponse {
  const [head, ...rest] = text.split('\r\n\r\n');
  const [statusLine, ...headerLines] = head.split('\r\n');
  const headers = Object.fromEntries(
    headerLines.map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
    }),
  );
  return {
    status: Number(statusLine.split(' ')[1]),
    headers,
    body: rest.join('\r\n\r\n'),
  };
}
