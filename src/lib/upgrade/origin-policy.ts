import type { IncomingMessage } from 'node:http';
import type { AllowedOrigins } from '../interfaces/ws-endpoint-options.interface';

/**
 * Why the request's `Origin` is refused under `allowed`, or `undefined` when it may connect.
 * A request without `Origin` (a non-browser client) always may.
 */
export function refuseOrigin(
  allowed: AllowedOrigins,
  request: IncomingMessage,
): string | undefined {
  const origin = request.headers.origin;
  if (!origin || allowed === '*') return undefined;
  if (allowed === 'same-host') {
    return hostOf(origin) === request.headers.host?.toLowerCase()
      ? undefined
      : `its host is not ${request.headers.host ?? 'the Host header'}`;
  }
  if (Array.isArray(allowed)) {
    return allowed.includes(origin) ? undefined : 'it is not in allowedOrigins';
  }
  if (allowed instanceof RegExp) {
    return allowed.test(origin)
      ? undefined
      : `it does not match ${String(allowed)}`;
  }
  return allowed(origin, request)
    ? undefined
    : 'the allowedOrigins function refused it';
}

function hostOf(origin: string): string | undefined {
  try {
    return new URL(origin).host.toLowerCase();
  } catch {
    return undefined;
  }
}
