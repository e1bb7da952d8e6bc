import { setTimeout as tick } from 'node:timers/promises';

/**
 * Resolves once `condition()` holds, looking every few ms (one question at a time, for one that
 * asks Redis); fails loudly after `timeout` ms. For a state the code under test reaches without
 * announcing it by an event (reading paused, a key in Redis).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeout = 5000,
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline)
      throw new Error(`Timed out after ${timeout} ms waiting until ${what}`);
    await tick(5);
  }
}
