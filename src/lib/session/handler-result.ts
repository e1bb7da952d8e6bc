import {
  concatMap,
  isObservable,
  lastValueFrom,
  Observable,
  takeUntil,
} from 'rxjs';
import type { WebSocketContext } from '../context/websocket-context';

/**
 * Sends what a handler returned, until it ends or the session does: each value of an
 * `Observable` (unsubscribed when the session ends), or of an `AsyncIterable` (left with
 * `return()` when the session ends, even while it awaits something else). Anything else sends
 * nothing.
 */
export function sendResult(
  result: unknown,
  context: WebSocketContext,
): Promise<void> {
  if (isObservable(result)) return sendObservable(result, context);
  if (isAsyncIterable(result) && result !== context) {
    return sendIterable(result, context);
  }
  return Promise.resolve();
}

function sendObservable(
  values: Observable<unknown>,
  context: WebSocketContext,
): Promise<void> {
  return lastValueFrom(
    values.pipe(
      takeUntil(aborted(context.signal)),
      concatMap((value) => context.send(value)),
    ),
    { defaultValue: undefined },
  );
}

async function sendIterable(
  values: AsyncIterable<unknown>,
  context: WebSocketContext,
): Promise<void> {
  const iterator = values[Symbol.asyncIterator]();
  const { signal } = context;
  let onAbort!: () => void;
  const stopped = new Promise<typeof STOPPED>((resolve) => {
    onAbort = () => resolve(STOPPED);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  let done = false;
  try {
    for (;;) {
      const next = iterator.next();
      const step = await Promise.race([next, stopped]);
      if (step === STOPPED) {
        // the generator may still settle that step later: nothing waits for it
        Promise.resolve(next).then(ignore, ignore);
        return;
      }
      if (step.done) {
        done = true;
        return;
      }
      await context.send(step.value);
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (!done) leave(iterator);
  }
}

/** Lets a generator run its `finally` blocks; what `return()` throws or rejects with is dropped. */
function leave(iterator: AsyncIterator<unknown>): void {
  try {
    Promise.resolve(iterator.return?.()).then(ignore, ignore);
  } catch {
    // a return() that throws: the session ends all the same
  }
}

/** Emits once, at once if the signal is already aborted: a session that ended before it began. */
function aborted(signal: AbortSignal): Observable<void> {
  return new Observable((subscriber) => {
    if (signal.aborted) return subscriber.next();
    const onAbort = () => subscriber.next();
    signal.addEventListener('abort', onAbort, { once: true });
    return () => signal.removeEventListener('abort', onAbort);
  });
}

const STOPPED = Symbol('stopped');

function ignore(): void {}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    typeof (value as AsyncIterable<unknown> | undefined)?.[
      Symbol.asyncIterator
    ] === 'function'
  );
}
