import { WebSocketMessage } from '../context/websocket-message';
import type { WebSocketDisconnect } from '../errors/ws-disconnect.exception';
import { INVALID_SIGNAL } from '../messages';
import { detachedBytes } from './detached-bytes';

/** Options of `receive()`. @publicApi */
export interface ReceiveOptions {
  /** Stops waiting when aborted; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Stops waiting after this many ms; the promise rejects with a `TimeoutError` DOMException. */
  timeout?: number;
}

/** How the queue's reader learns that the queue grew or shrank, to pause or resume reading. */
export interface InboundFlow {
  regulate(messages: number, bytes: number): void;
}

interface Waiter {
  resolve(value: unknown): void;
  reject(error: unknown): void;
  /** An iterator's `next()`: settles with an IteratorResult, and with `done` at the end. */
  iterating?: boolean;
}

/** What an iterator's `next()` settles with once the connection has ended. */
export const DONE: IteratorReturnResult<undefined> = Object.freeze({
  value: undefined,
  done: true,
});

/**
 * The messages a connection has received that its handler has not read yet, and the handler's
 * pending reads, served in order. It counts what it holds in messages and in bytes and tells
 * its `flow` after each change, so that the connection pauses reading while it holds too much;
 * a queued message is copied out of the socket read it came in when it is a small part of it,
 * so that the bytes counted are the bytes held.
 */
export class InboundQueue {
  private readonly messages: WebSocketMessage[] = [];
  private queuedBytes = 0;
  /**
   * The pending `for await` read, when it is the only pending read: the rule, and the hot path,
   * which then allocates no waiter. Any other read waits in `waiters`, after it.
   */
  private reader?: (result: IteratorResult<WebSocketMessage>) => void;
  private waiters: Waiter[] = [];
  private ended?: () => WebSocketDisconnect;

  constructor(private readonly flow: InboundFlow) {}

  /** Unread messages. */
  get size(): number {
    return this.messages.length;
  }

  /** The payload bytes of the unread messages. */
  get bytes(): number {
    return this.queuedBytes;
  }

  push(message: WebSocketMessage): void {
    const reader = this.reader;
    if (reader) {
      this.reader = undefined;
      return reader({ value: message, done: false });
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      return waiter.resolve(
        waiter.iterating ? { value: message, done: false } : message,
      );
    }
    // what waits holds only itself, not the socket read it was cut from
    const data = detachedBytes(message.data);
    this.messages.push(
      data === message.data
        ? message
        : new WebSocketMessage(data, message.type, message.id),
    );
    this.queuedBytes += data.length;
    this.flow.regulate(this.messages.length, this.queuedBytes);
  }

  /**
   * The next message; once the queue is empty after the end, rejects with the end's error.
   * @param signal stops the wait when aborted (a deadline the caller made once for its call)
   */
  next(signal?: AbortSignal): Promise<WebSocketMessage> {
    const queued = this.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(this.ended());
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      if (!signal)
        return this.wait({ resolve: resolve as Waiter['resolve'], reject });
      const onAbort = () => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(signal.reason);
      };
      const settle = () => signal.removeEventListener('abort', onAbort);
      const waiter: Waiter = {
        resolve: (message) => (settle(), resolve(message as WebSocketMessage)),
        reject: (error) => (settle(), reject(error)),
      };
      this.wait(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** `next()` for `for await`: settles straight with the IteratorResult, no promise in between. */
  nextResult(): Promise<IteratorResult<WebSocketMessage>> {
    const queued = this.shift();
    if (queued) return Promise.resolve({ value: queued, done: false });
    if (this.ended) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => {
      if (!this.reader && !this.waiters.length) this.reader = resolve;
      else this.wait({ resolve, reject, iterating: true });
    });
  }

  private wait(waiter: Waiter): void {
    // one waiter is the rule: an array of exactly one rather than the 17 slots a push reserves
    if (this.waiters.length) this.waiters.push(waiter);
    else this.waiters = [waiter];
  }

  /** No message will come any more: pending reads end now, later ones once the queue is read. */
  end(error: () => WebSocketDisconnect): void {
    this.ended = error;
    this.reader?.(DONE);
    this.reader = undefined;
    for (const waiter of this.waiters.splice(0)) {
      if (waiter.iterating) waiter.resolve(DONE);
      else waiter.reject(error());
    }
  }

  /** The oldest queued message; the flow learns that the queue shrank. */
  private shift(): WebSocketMessage | undefined {
    const queued = this.messages.shift();
    if (queued) {
      this.queuedBytes -= queued.data.length;
      this.flow.regulate(this.messages.length, this.queuedBytes);
    }
    return queued;
  }
}

/** The one signal that ends a `receive()` call: its own signal, its deadline, or both. */
export function receiveSignal({ signal, timeout }: ReceiveOptions = {}):
  AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(INVALID_SIGNAL);
  }
  const timer =
    timeout === undefined ? undefined : AbortSignal.timeout(timeout);
  if (signal && timer) return AbortSignal.any([signal, timer]);
  return signal ?? timer;
}
