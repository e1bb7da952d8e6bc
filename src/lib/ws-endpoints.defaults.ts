import { INVALID_OPTION } from './messages';
import type {
  ResolvedWsEndpointOptions,
  WsEndpointOptions,
  WsEndpointsModuleOptions,
} from './interfaces/ws-endpoint-options.interface';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The default of every endpoint option. */
export const ENDPOINT_DEFAULTS: ResolvedWsEndpointOptions = {
  maxPayload: 64 * KiB,
  maxFragments: 1024,
  validation: 'reply',
  closeTimeout: 5_000,
  heartbeat: { interval: 30_000, timeout: 10_000 },
  inboundQueue: 64,
  inboundQueueBytes: 64 * KiB,
  sendHighWaterMark: MiB,
  sendTimeout: 10_000,
  allowedOrigins: 'same-host',
  protocols: [],
  rejectUnknownProtocols: true,
  perMessageDeflate: false,
  reliable: false,
  requests: false,
  userId: defaultUserId,
};

export const RELIABLE_DEFAULTS = {
  resumeWindow: 120_000,
  replayBuffer: 256 * KiB,
};
export const REQUESTS_DEFAULTS = { window: 120_000 };
export const PRESENCE_DEFAULTS = { grace: 5_000, ttl: 15_000 };

/** A user's `id`, `sub` or `userId`, or the user itself when it is a string or a number. */
export function defaultUserId(user: any): string | number | undefined {
  if (typeof user === 'string' || typeof user === 'number') return user;
  if (user === null || typeof user !== 'object') return undefined;
  return user.id ?? user.sub ?? user.userId;
}

/** The default `shutdownTimeout`. */
export const DEFAULT_SHUTDOWN_TIMEOUT = 10_000;

/** The default `handshakeTimeout`. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

/** An endpoint's options: its own, then the module's, then the defaults. */
export function resolveEndpointOptions(
  moduleOptions: WsEndpointsModuleOptions,
  endpointOptions: WsEndpointOptions,
): ResolvedWsEndpointOptions {
  const {
    shutdownTimeout: _shutdown,
    handshakeTimeout: _handshake,
    ...moduleEndpointOptions
  } = moduleOptions;
  const {
    idempotencyStore: _store,
    backplane: _backplane,
    presence: _presence,
    ...endpointDefaults
  } = moduleEndpointOptions;
  const given = {
    ...withoutUndefined(endpointDefaults),
    ...withoutUndefined(endpointOptions),
  };
  const options = {
    ...ENDPOINT_DEFAULTS,
    ...given,
    reliable: withDefaults(given.reliable, RELIABLE_DEFAULTS),
    requests: withDefaults(given.requests, REQUESTS_DEFAULTS),
  } as ResolvedWsEndpointOptions;
  // reliable sessions take requests too
  if (options.reliable && !options.requests) {
    options.requests = { ...REQUESTS_DEFAULTS };
  }
  // one message of maxPayload fills the queue, unless a bound was given
  options.inboundQueueBytes =
    endpointOptions.inboundQueueBytes ??
    moduleOptions.inboundQueueBytes ??
    options.maxPayload;
  return options;
}

/** `true` → the defaults; an object → it over the defaults; anything else as given (checked later). */
function withDefaults<T extends object>(
  value: boolean | Partial<T> | undefined,
  defaults: T,
): T | false {
  if (value === undefined || value === false) return false;
  if (value === true) return { ...defaults };
  if (typeof value !== 'object' || value === null) return value as never;
  return { ...defaults, ...withoutUndefined(value) } as T;
}

function withoutUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}

type Check = [name: string, valid: (value: never) => boolean, expected: string];

const isCount = (value: number) => Number.isInteger(value) && value >= 1;
const isDuration = (value: number) => Number.isFinite(value) && value >= 0;

const CHECKS: Check[] = [
  ['maxPayload', isCount, 'a whole number of bytes ≥ 1'],
  ['maxFragments', isCount, 'a whole number ≥ 1'],
  ['inboundQueue', isCount, 'a whole number of messages ≥ 1'],
  ['inboundQueueBytes', isCount, 'a whole number of bytes ≥ 1'],
  ['sendHighWaterMark', isDuration, 'a number of bytes ≥ 0'],
  ['sendTimeout', isDuration, 'a number of ms ≥ 0'],
  ['closeTimeout', isDuration, 'a number of ms ≥ 0'],
  [
    'validation',
    (value: string) => value === 'reply' || value === 'close',
    "'reply' or 'close'",
  ],
  [
    'heartbeat',
    (value: ResolvedWsEndpointOptions['heartbeat']) =>
      value === false || (isCount(value?.interval) && isCount(value?.timeout)),
    'false, or { interval, timeout } in whole ms ≥ 1',
  ],
  [
    'reliable',
    (value: ResolvedWsEndpointOptions['reliable']) =>
      value === false ||
      (typeof value === 'object' &&
        isCount(value.resumeWindow) &&
        isCount(value.replayBuffer)),
    'true, false, or { resumeWindow, replayBuffer } in whole ms and bytes ≥ 1',
  ],
  [
    'requests',
    (value: ResolvedWsEndpointOptions['requests']) =>
      value === false || (typeof value === 'object' && isCount(value.window)),
    'true, false, or { window } in whole ms ≥ 1',
  ],
  [
    'userId',
    (value: unknown) => typeof value === 'function',
    'a function of the user',
  ],
  [
    'protocols',
    (value: unknown) =>
      Array.isArray(value) &&
      value.every((p) => typeof p === 'string' && p !== ''),
    'an array of subprotocol names',
  ],
  [
    'allowedOrigins',
    (value: unknown) =>
      value === 'same-host' ||
      value === '*' ||
      value instanceof RegExp ||
      typeof value === 'function' ||
      (Array.isArray(value) &&
        value.every((origin) => typeof origin === 'string')),
    "'same-host', '*', a list of origins, a RegExp or a function",
  ],
];

/** The module's own options, each optional. */
const MODULE_CHECKS: Check[] = [
  ['shutdownTimeout', isDuration, 'a number of ms ≥ 0'],
  ['handshakeTimeout', isCount, 'a whole number of ms ≥ 1'],
  [
    'idempotencyStore',
    (value: Record<string, unknown>) =>
      typeof value === 'object' &&
      value !== null &&
      ['claim', 'extend', 'complete', 'release', 'wait'].every(
        (method) => typeof value[method] === 'function',
      ),
    'an IdempotencyStore (claim, extend, complete, release, wait)',
  ],
  [
    'backplane',
    (value: Record<string, unknown>) =>
      typeof value === 'object' &&
      value !== null &&
      [
        'start',
        'publish',
        'subscribe',
        'history',
        'presenceJoin',
        'close',
      ].every((method) => typeof value[method] === 'function'),
    'a Backplane (MemoryBackplane, RedisBackplane or your own)',
  ],
  [
    'presence',
    (value: Record<string, unknown>) =>
      typeof value === 'object' &&
      value !== null &&
      (value.grace === undefined || isDuration(value.grace as number)) &&
      (value.ttl === undefined ||
        (isCount(value.ttl as number) && (value.ttl as number) >= 300)),
    '{ grace?: ms ≥ 0, ttl?: ms ≥ 300 }',
  ],
];

/**
 * Fails at bootstrap on an option that would misbehave at the first connection.
 * @throws Error naming the endpoint, the option, what it takes and what it got
 */
export function assertValidOptions(
  options: ResolvedWsEndpointOptions,
  where: string,
): void {
  assertChecks(CHECKS, options, where);
}

/** @throws Error for a shutdownTimeout or handshakeTimeout that is not a duration */
export function assertValidModuleOptions(
  options: WsEndpointsModuleOptions,
): void {
  const given = withoutUndefined(options);
  assertChecks(
    MODULE_CHECKS.filter(([name]) => name in given),
    given,
    'WsEndpointsModule',
  );
}

function assertChecks(checks: Check[], options: object, where: string): void {
  for (const [name, valid, expected] of checks) {
    const value = (options as Record<string, unknown>)[name];
    if (!valid(value as never))
      throw new Error(INVALID_OPTION(where, name, expected, value));
  }
}
