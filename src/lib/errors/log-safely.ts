/**
 * Makes a log call that cannot throw: the app's logger is user code too, and a failure path,
 * a timer or an event listener that logs must not turn a logger's exception into a crash.
 */
export function logSafely(log: () => void): void {
  try {
    log();
  } catch {
    // the app's logger failed: there is nowhere left to say it
  }
}
