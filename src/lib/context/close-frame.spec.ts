import { assertValidClose, truncateCloseReason } from './close-frame';
import { describeCloseCode, isSendableCloseCode } from './close-code.enum';

describe('close frame validation', () => {
  it.each([
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
    3000, 4000, 4999,
  ])('accepts %i', (code) => {
    expect(isSendableCloseCode(code)).toBe(true);
    expect(() => assertValidClose(code, '')).not.toThrow();
  });

  it.each([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1000.5, NaN])(
    'refuses %d with a RangeError',
    (code) => {
      expect(() => assertValidClose(code, '')).toThrow(RangeError);
      expect(() => assertValidClose(code, '')).toThrow(
        /use 1000, 1001–1003, 1007–1014 or 3000–4999/,
      );
    },
  );

  it('accepts a reason of 123 bytes and refuses 124, counting UTF-8 bytes, not characters', () => {
    expect(() => assertValidClose(1000, 'x'.repeat(123))).not.toThrow();
    expect(() => assertValidClose(1000, 'é'.repeat(62))).toThrow(
      'The close reason is 124 bytes long',
    );
  });

  it('truncates a long reason to at most 123 bytes without splitting a character', () => {
    const reason = truncateCloseReason('€'.repeat(100));
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    expect(reason).toMatch(/^€+\.\.\.$/);
    expect(truncateCloseReason('short')).toBe('short');
  });

  it('names the well-known codes', () => {
    expect(describeCloseCode(1001)).toBe('1001 Going Away');
    expect(describeCloseCode(4403)).toBe('4403');
  });
});
