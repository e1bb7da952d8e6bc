/**
 * `promise`, or a rejection naming `what` when it has not settled within `ms`: a wait that fails
 * loudly instead of hanging the test.
 */
export function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string | (() => string),
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `Timed out after ${ms} ms: ${typeof what === 'function' ? what() : what}`,
          ),
        ),
      ms,
    );
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
