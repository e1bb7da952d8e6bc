import { HttpException } from '@nestjs/common';
import { WsException } from '@nestjs/websockets';
import { CloseCode, isSendableCloseCode } from '../context/close-code.enum';
import { truncateCloseReason } from '../context/close-frame';

/** A close frame, and whether the error was expected (a `WsException` or `HttpException`). */
export interface ErrorClose {
  code: number;
  reason: string;
  expected: boolean;
}

const INTERNAL: ErrorClose = {
  code: CloseCode.InternalError,
  reason: 'Internal server error',
  expected: false,
};

/**
 * The close frame for an error a handler threw: `WsException` → 1008 with its message,
 * `HttpException` → 4000 + status, anything else → 1011 without its message. Never throws:
 * a value whose getters or prototype chain throw gets 1011.
 */
export function closeForError(error: unknown): ErrorClose {
  try {
    if (error instanceof WsException) {
      return {
        code: CloseCode.PolicyViolation,
        reason: truncateCloseReason(reasonOf(error.getError())),
        expected: true,
      };
    }
    if (error instanceof HttpException) {
      const code = CloseCode.HttpBase + error.getStatus();
      if (!isSendableCloseCode(code)) return INTERNAL;
      return {
        code,
        reason: truncateCloseReason(String(error.message)),
        expected: true,
      };
    }
  } catch {
    // a message, a status or a prototype chain that throws: an error like any other
  }
  return INTERNAL;
}

/** A WsException's detail as a close reason: a string, an object's message, or its JSON. */
function reasonOf(detail: unknown): string {
  if (typeof detail === 'string') return detail;
  if (detail === null || detail === undefined) return '';
  const message = (detail as { message?: unknown }).message;
  if (typeof message === 'string') return message;
  try {
    return JSON.stringify(detail) ?? '';
  } catch {
    return '';
  }
}

/** The body of the error frame sent for a message that `receive(Dto)` rejected. */
export function errorFrameFor(error: HttpException): {
  error: { status: number; message: unknown };
} {
  const response = error.getResponse();
  const message =
    typeof response === 'object' && response && 'message' in response
      ? response.message
      : response;
  return { error: { status: error.getStatus(), message } };
}

/**
 * What a request's client learns of a failure: an `HttpException`'s status and message (a
 * `ValidationPipe`'s list of what is wrong), anything else a 500 without its message. Never throws.
 */
export function failureFor(error: unknown): {
  status: number;
  message: string | string[];
} {
  try {
    if (error instanceof HttpException) {
      const { status, message } = errorFrameFor(error).error;
      return {
        status,
        message: Array.isArray(message) ? message.map(String) : String(message),
      };
    }
  } catch {
    // a status, a response or a prototype chain that throws: a failure like any other
  }
  return { status: 500, message: 'Internal server error' };
}
