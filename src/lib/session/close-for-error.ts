import { HttpException } from '@nestjs/common';
import { WsException } from '@nestjs/websockets';
import { CloseCode } from '../context/close-code.enum';
import { truncateCloseReason } from '../context/close-frame';

/** A close frame, and whether the error was expected (a `WsException` or `HttpException`). */
export interface ErrorClose {
  code: number;
  reason: string;
  expected: boolean;
}

/**
 * The close frame for an error a handler threw: `WsException` → 1008 with its message,
 * `HttpException` → 4000 + status, anything else → 1011 without its message.
 */
export function closeForError(error: unknown): ErrorClose {
  if (error instanceof WsException) {
    const detail = error.getError();
    // a string, an object's message, or the object itself as JSON, as gateways send it
    const message =
      typeof detail === 'string'
        ? detail
        : ((detail as { message?: string }).message ?? JSON.stringify(detail));
    return {
      code: CloseCode.PolicyViolation,
      reason: truncateCloseReason(String(message)),
      expected: true,
    };
  }
  if (error instanceof HttpException) {
    return {
      code: CloseCode.HttpBase + error.getStatus(),
      reason: truncateCloseReason(error.message),
      expected: true,
    };
  }
  return {
    code: CloseCode.InternalError,
    reason: 'Internal server error',
    expected: false,
  };
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
