import { inspect } from 'node:util';

/**
 * Anything user code threw, as text for a log line: an error's stack, a string as it is, any
 * other value as `util.inspect` shows it. Never throws, whatever the value (a getter that
 * throws, a Proxy, a null-prototype object, a BigInt).
 */
export function describeError(error: unknown): string {
  try {
    if (error instanceof Error) {
      return error.stack ?? `${error.name}: ${error.message}`;
    }
  } catch {
    // a prototype chain, a stack or a message getter that throws: inspected below
  }
  try {
    return typeof error === 'string'
      ? error
      : inspect(error, { depth: 2, breakLength: Infinity });
  } catch {
    return `a thrown ${typeof error}`;
  }
}

/** `value instanceof type`, false where the value's prototype chain throws (a Proxy). */
export function isInstance<T>(
  value: unknown,
  type: abstract new (...args: never[]) => T,
): value is T {
  try {
    return value instanceof type;
  } catch {
    return false;
  }
}
