import {
  CLOSE_REASON_NOT_TEXT,
  CLOSE_REASON_TOO_LONG,
  INVALID_CLOSE_CODE,
} from '../messages';
import { isSendableCloseCode } from './close-code.enum';

/**
 * Checks a close code and reason before anything is sent, as `ws` does.
 * @throws RangeError when the code may not be sent or the reason is over 123 bytes
 */
export function assertValidClose(code: number, reason: string): void {
  if (!isSendableCloseCode(code)) {
    throw new RangeError(INVALID_CLOSE_CODE(code));
  }
  if (typeof reason !== 'string') {
    throw new TypeError(CLOSE_REASON_NOT_TEXT(reason));
  }
  const bytes = Buffer.byteLength(reason);
  if (bytes > 123) {
    throw new RangeError(CLOSE_REASON_TOO_LONG(bytes));
  }
}

/** Cuts a reason to the 123 bytes a close frame can hold, without splitting a character. */
export function truncateCloseReason(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let cut = reason.slice(0, 123);
  while (Buffer.byteLength(cut) > 120) cut = cut.slice(0, -1);
  return `${cut}...`;
}
