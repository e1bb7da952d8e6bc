import { setTimeout as tick } from 'node:timers/promises';

/**
 * Resolves once `condition()` holds, looking every few ms; fails loudly after `timeout` ms. For
 * a state the code under test reaches without announcing it by an event (reading paused).
 */
export async function until(
  condition: () => boolean,
  what: string,
  timeout = 5000,
): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline)
      throw new Error(`Timed out after ${timeout} ms waiting until ${what}`);
    await tick(5);
  }
}
