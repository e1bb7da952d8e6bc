import type { INestApplication } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { ClientOptions } from 'ws';
import { WsTestClient } from './ws-test-client';

/** An app listening (on port 0 is fine), or a base URL such as `ws://127.0.0.1:3000`. @publicApi */
export type WsTarget = INestApplication | string;

/** Options of `connectWs()` and `expectRejected()`. @publicApi */
export interface ConnectOptions extends ClientOptions {
  /** Subprotocols to offer. */
  protocols?: string | string[];
  /** ms to wait for the handshake, and the default of `next()`. @default 5000 */
  timeout?: number;
}

/** An HTTP answer to an upgrade request that was refused. @publicApi */
export interface RejectedUpgrade {
  status: number;
  headers: IncomingHttpHeaders;
  /** The response body, parsed as JSON when it is JSON. */
  body: any;
}

/** The `ws://` URL of `path` on `target`. @publicApi */
export function wsUrl(target: WsTarget, path: string): string {
  if (typeof target === 'string')
    return `${target.replace(/^http/, 'ws').replace(/\/$/, '')}${path}`;
  const address = target.getHttpServer().address() as AddressInfo | null;
  if (!address)
    throw new Error(
      'The app is not listening: call `await app.listen(0)` before connecting.',
    );
  return `ws://127.0.0.1:${address.port}${path}`;
}

/**
 * Opens a WebSocket to `path` and resolves once the handshake is complete.
 * @throws Error naming the HTTP status and body when the server refuses the upgrade
 * @example const client = await connectWs(app, '/chat/general', { headers: { authorization: 'Bearer t' } });
 * @publicApi
 */
export async function connectWs(
  target: WsTarget,
  path: string,
  options: ConnectOptions = {},
): Promise<WsTestClient> {
  const outcome = await handshake(target, path, options);
  if ('status' in outcome) {
    throw new Error(
      `Expected the upgrade to ${path} to succeed, got HTTP ${outcome.status}: ${JSON.stringify(outcome.body)}`,
    );
  }
  return outcome;
}

/**
 * Asserts that the server refuses the upgrade to `path` with `status`, and returns its answer.
 * @example const { body } = await expectRejected(app, '/chat/general', 401);
 * @publicApi
 */
export async function expectRejected(
  target: WsTarget,
  path: string,
  status: number,
  options: ConnectOptions = {},
): Promise<RejectedUpgrade> {
  const outcome = await handshake(target, path, options);
  if (!('status' in outcome)) {
    await outcome.close();
    throw new Error(
      `Expected the upgrade to ${path} to be refused with HTTP ${status}, but it was accepted.`,
    );
  }
  if (outcome.status !== status) {
    throw new Error(
      `Expected HTTP ${status} for the upgrade to ${path}, got ${outcome.status}: ${JSON.stringify(outcome.body)}`,
    );
  }
  return outcome;
}

function handshake(
  target: WsTarget,
  path: string,
  options: ConnectOptions,
): Promise<WsTestClient | RejectedUpgrade> {
  const { protocols, timeout = 5000, ...clientOptions } = options;
  const ws = new WebSocket(wsUrl(target, path), protocols, {
    handshakeTimeout: timeout,
    ...clientOptions,
  });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(new WsTestClient(ws, timeout)));
    ws.once('error', reject);
    ws.once('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: the text as it is
        }
        ws.on('error', () => undefined);
        ws.terminate();
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body,
        });
      });
    });
  });
}
