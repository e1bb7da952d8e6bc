import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { detachedBytes } from './detached-bytes';

// What the transport needs of `ws` beyond its public API, in one place. Read from ws 8.23
// (lib/websocket.js, lib/permessage-deflate.js); the tests of flow control with
// permessage-deflate fail if a later version renames these.

type Decompress = (
  data: Buffer,
  fin: boolean,
  callback: (error: Error | null, result?: Buffer) => void,
) => void;

interface WsInternals {
  _socket?: Duplex;
  _extensions?: Record<string, { decompress: Decompress } | undefined>;
  _receiver?: Receiver;
}

/** ws's frame parser: `consume(n)` takes the next `n` bytes of what the socket delivered. */
interface Receiver {
  consume: (this: Receiver, n: number) => Buffer;
  /** Parses what it holds, frame after frame, while `_loop` stays true; `done` gets its error. */
  startLoop(done: (error?: Error) => void): void;
  /** The parser's state: GET_INFO (0) between frames, GET_DATA (4) while it takes a payload. */
  _state: number;
  /** Whether the frame being read is the last of its message. */
  _fin: boolean;
  /** Whether it goes on to the next frame. */
  _loop: boolean;
  /** Bytes it holds, not parsed yet. */
  _bufferedBytes: number;
  destroy(error: Error): void;
}

const GET_INFO = 0;
const GET_DATA = 4;

/**
 * Stops `ws`'s parser after the frame it is on. Pausing the socket stops new reads, but `ws`
 * goes on parsing the read it has, which can hold some 9,000 one-byte frames: each a message
 * object past the bound of unread messages.
 */
export function stopParsing(ws: WebSocket): void {
  const receiver = (ws as unknown as WsInternals)._receiver;
  if (receiver) receiver._loop = false;
}

/** Parses on what `ws` had read when `stopParsing` stopped it. */
export function resumeParsing(ws: WebSocket): void {
  const receiver = (ws as unknown as WsInternals)._receiver;
  if (
    receiver &&
    !receiver._loop &&
    receiver._state === GET_INFO &&
    receiver._bufferedBytes > 0
  ) {
    receiver.startLoop((error) => {
      // what the socket's write callback does with a protocol error: ws closes with its code
      if (error) receiver.destroy(error);
    });
  }
}

/**
 * Makes `ws` keep a copy of each fragment that waits for the rest of its message, rather than
 * a view of the socket read it came in: a peer that sends each 1-byte fragment in a read of its
 * own, padded with pongs, would otherwise keep one whole read (up to 64 KiB) alive per fragment
 * until the message completes. Final fragments and whole messages are not copied.
 */
export function copyHeldFragments(ws: WebSocket): void {
  const receiver = (ws as unknown as WsInternals)._receiver;
  if (!receiver) return;
  consume ??= (Object.getPrototypeOf(receiver) as Receiver).consume;
  receiver.consume = consumeCopyingHeldFragments;
}

/** ws's own `consume`. */
let consume: Receiver['consume'] | undefined;

/** Shared by every receiver (`this`): no closure per connection. */
function consumeCopyingHeldFragments(this: Receiver, n: number): Buffer {
  const bytes = consume!.call(this, n);
  return this._state === GET_DATA && !this._fin ? detachedBytes(bytes) : bytes;
}

/**
 * Makes `ws` inflate no compressed frame while `hold()` says so and the socket is open: each
 * such frame waits until `release` is called, or the socket closes. `ws` keeps emitting the
 * messages already in the chunk it read when reading is paused, and with permessage-deflate a
 * few KiB of frames can inflate to many MiB; holding the inflation stops its receiver at the
 * frame, so the bound on unread bytes holds.
 * @returns the function that inflates the held frame, if any; `undefined` without compression
 */
export function holdInflation(
  ws: WebSocket,
  hold: () => boolean,
): (() => void) | undefined {
  const deflate = (ws as unknown as WsInternals)._extensions?.[
    'permessage-deflate'
  ];
  if (!deflate) return undefined;
  const decompress = deflate.decompress.bind(deflate);
  let held: (() => void) | undefined;
  let watchingSocket = false;
  const release = () => {
    const inflate = held;
    held = undefined;
    inflate?.();
  };
  const socket = (ws as unknown as WsInternals)._socket;
  deflate.decompress = (data, fin, callback) => {
    // once the socket is gone, ws reports the close only after its receiver has read all it had
    if (!hold() || socket?.destroyed) return decompress(data, fin, callback);
    held = () => decompress(data, fin, callback);
    if (watchingSocket) return;
    watchingSocket = true;
    socket?.once('close', release);
  };
  return release;
}
