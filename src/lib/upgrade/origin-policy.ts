import type { IncomingMessage } from 'node:http';
import type { AllowedOrigins } from '../interfaces/ws-endpoint-options.interface';

/**
 * Why a request's `Origin` is refused, or `undefined` when it may connect. A request without
 * `Origin` (a non-browser client) always may. May reject with what an `allowedOrigins`
 * function threw.
 */
export type OriginPolicy = (
  request: IncomingMessage,
) => Promise<string | undefined> | string | undefined;

/**
 * An endpoint's `allowedOrigins`, made once: listed origins are compared as origins (scheme,
 * host and port, case-insensitive; a trailing slash or a path does not count), a RegExp is
 * tested from the start each time whatever its flags, a function may be async.
 */
export function originPolicy(allowed: AllowedOrigins): OriginPolicy {
  if (allowed === '*') return () => undefined;
  if (allowed === 'same-host') {
    return ({ headers: { origin, host } }) =>
      !origin || isSameHost(origin, host)
        ? undefined
        : `its host is not ${host ?? 'the Host header'}`;
  }
  if (Array.isArray(allowed)) {
    const origins = new Set(allowed.map(normalizeOrigin));
    return ({ headers: { origin } }) =>
      !origin || origins.has(normalizeOrigin(origin))
        ? undefined
        : 'it is not in allowedOrigins';
  }
  if (allowed instanceof RegExp) {
    return ({ headers: { origin } }) => {
      if (!origin) return undefined;
      // a RegExp with the g or y flag goes on from where its last match ended
      allowed.lastIndex = 0;
      const matches = allowed.test(origin);
      allowed.lastIndex = 0;
      return matches ? undefined : `it does not match ${String(allowed)}`;
    };
  }
  return async (request) => {
    const { origin } = request.headers;
    if (!origin) return undefined;
    return (await allowed(origin, request))
      ? undefined
      : 'the allowedOrigins function refused it';
  };
}

/** `https://App.Example:443/` → `https://app.example`; what is not a URL stays as it is. */
function normalizeOrigin(origin: string): string {
  try {
    const { origin: normalized } = new URL(origin);
    return normalized === 'null' ? origin : normalized;
  } catch {
    return origin;
  }
}

/** Whether the Origin's host and port are the Host header's (the default port of its scheme when none). */
function isSameHost(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    const { protocol, host: originHost } = new URL(origin);
    return new URL(`${protocol}//${host}`).host === originHost;
  } catch {
    return false;
  }
}
