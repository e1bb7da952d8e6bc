import { describeCloseCode } from '../context/close-code.enum';

/**
 * The connection is closed: thrown by `receive()` and `send()` once the socket has closed.
 * When it escapes a handler the session ends normally, it is not an error.
 *
 * @example
 * try { await socket.receive(); } catch (e) { if (e instanceof WebSocketDisconnect) console.log(e.code); }
 * @publicApi
 */
export class WebSocketDisconnect extends Error {
  constructor(
    /** The close code (1006 when the connection dropped without a close frame). */
    readonly code: number,
    /** The close reason, `''` when none was given. */
    readonly reason = '',
    message = `The WebSocket connection is closed (${describeCloseCode(code)}${reason ? `: ${reason}` : ''}).`,
  ) {
    super(message);
    this.name = 'WebSocketDisconnect';
  }
}

/**
 * A `WebSocketDisconnect` without a stack trace: every connection ends with one, and capturing a
 * stack costs more than the rest of the close; a normal end has no stack worth reading.
 */
export function disconnectOf(
  code: number,
  reason = '',
  message?: string,
): WebSocketDisconnect {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new WebSocketDisconnect(code, reason, message);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
