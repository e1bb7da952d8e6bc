import fc from 'fast-check';
import { backoffDelay } from './backoff';

/** The largest number `Math.random()` can return. */
const ALMOST_ONE = 1 - 2 ** -53;
const highest = () => ALMOST_ONE;
const lowest = () => 0;

describe('backoffDelay', () => {
  it('waits just under initialDelay × 2ⁿ, capped at maxDelay, when random() is at its highest', () => {
    const options = { initialDelay: 100, maxDelay: 1000 };
    expect(
      [0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, options, highest)),
    ).toEqual([99, 199, 399, 799, 999, 999]);
  });

  it('waits 0 ms when random() is 0, at any attempt', () => {
    for (const n of [0, 1, 5, 30, 1000]) {
      expect(
        backoffDelay(n, { initialDelay: 100, maxDelay: 1000 }, lowest),
      ).toBe(0);
    }
  });

  it('defaults to 500 ms for the first retry and 10 s between two tries', () => {
    expect(backoffDelay(0, {}, highest)).toBe(499);
    expect(backoffDelay(1, {}, highest)).toBe(999);
    expect(backoffDelay(4, {}, highest)).toBe(7999);
    expect(backoffDelay(5, {}, highest)).toBe(9999);
  });

  it('never waits more than maxDelay, however many tries failed', () => {
    for (const n of [31, 64, 1024, 1e9, Number.MAX_SAFE_INTEGER]) {
      expect(backoffDelay(n, {}, highest)).toBe(9999);
      expect(backoffDelay(n, { initialDelay: 1, maxDelay: 50 }, highest)).toBe(
        49,
      );
    }
  });

  it('is a whole number of ms in [0, min(maxDelay, initialDelay × 2ⁿ)) for any random()', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 10_000 }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.integer({ min: 1, max: 600_000 }),
        fc.double({ min: 0, max: ALMOST_ONE, noNaN: true }),
        (n, initialDelay, maxDelay, r) => {
          const delay = backoffDelay(n, { initialDelay, maxDelay }, () => r);
          const cap = Math.min(maxDelay, initialDelay * 2 ** n);
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThan(cap);
        },
      ),
    );
  });

  it('draws from Math.random() by default', () => {
    const random = jest.spyOn(Math, 'random').mockReturnValue(0.5);
    try {
      expect(backoffDelay(2, {})).toBe(1000);
      expect(random).toHaveBeenCalledTimes(1);
    } finally {
      random.mockRestore();
    }
  });
});
