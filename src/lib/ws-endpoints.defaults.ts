import type {
  ResolvedWsEndpointOptions,
  WsEndpointOptions,
  WsEndpointsModuleOptions,
} from './interfaces/ws-endpoint-options.interface';

const MiB = 1024 * 1024;

/** The default of every endpoint option. */
export const ENDPOINT_DEFAULTS: ResolvedWsEndpointOptions = {
  maxPayload: MiB,
  maxFragments: 16 * 1024,
  validation: 'reply',
  closeTimeout: 5_000,
  heartbeat: { interval: 30_000, timeout: 10_000 },
  inboundQueue: 64,
  sendHighWaterMark: MiB,
  sendTimeout: 10_000,
  allowedOrigins: 'same-host',
  protocols: [],
  rejectUnknownProtocols: true,
  perMessageDeflate: false,
};

/** The default `shutdownTimeout`. */
export const DEFAULT_SHUTDOWN_TIMEOUT = 10_000;

/** An endpoint's options: its own, then the module's, then the defaults. */
export function resolveEndpointOptions(
  moduleOptions: WsEndpointsModuleOptions,
  endpointOptions: WsEndpointOptions,
): ResolvedWsEndpointOptions {
  const { shutdownTimeout: _, ...moduleEndpointOptions } = moduleOptions;
  return {
    ...ENDPOINT_DEFAULTS,
    ...withoutUndefined(moduleEndpointOptions),
    ...withoutUndefined(endpointOptions),
  };
}

function withoutUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}
