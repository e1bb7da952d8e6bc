import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/** An HTTP error's body in Nest's JSON shape. */
export function errorBody(status: number, message: string): string {
  return JSON.stringify({
    message,
    error: STATUS_CODES[status] ?? 'Error',
    statusCode: status,
  });
}

/**
 * Writes an HTTP error in Nest's JSON shape to a raw socket that carries no response, and
 * destroys the socket once the answer is flushed (as `ws` does): a peer that never closes its
 * side, or keeps sending, holds nothing.
 */
export function refuseSocket(
  socket: Duplex,
  status: number,
  message: string,
): void {
  const body = errorBody(status, message);
  destroyWhenFlushed(
    socket,
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\n` +
      `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Ends the socket (after `last`) and destroys it once what was written to it is flushed. */
export function destroyWhenFlushed(socket: Duplex, last?: string): void {
  if (socket.writableFinished || socket.destroyed) return void socket.destroy();
  socket.once('finish', () => socket.destroy());
  socket.end(last);
}
