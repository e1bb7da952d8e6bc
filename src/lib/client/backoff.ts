/** Reconnection timing. @publicApi */
export interface BackoffOptions {
  /** ms before the first retry, at most (full jitter: a random delay up to it). @default 500 */
  initialDelay?: number;
  /** The most ms between two tries. @default 10000 */
  maxDelay?: number;
  /** Tries after a drop before the client gives up; no limit by default. @default Infinity */
  retries?: number;
}

/**
 * Exponential backoff with full jitter: try n waits a random time up to
 * min(maxDelay, initialDelay × 2ⁿ), so that clients dropped together do not return together.
 */
export function backoffDelay(
  attempt: number,
  { initialDelay = 500, maxDelay = 10_000 }: BackoffOptions,
  random: () => number = Math.random,
): number {
  const cap = Math.min(maxDelay, initialDelay * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}
