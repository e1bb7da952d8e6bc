import { DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_PAYLOAD } from './constants';
import {
  ResolvedWsEndpointOptions,
  WsEndpointOptions,
  WsEndpointsModuleOptions,
} from './interfaces/ws-endpoint-options.interface';

const DEFAULTS: ResolvedWsEndpointOptions = {
  maxPayload: DEFAULT_MAX_PAYLOAD,
  validation: 'reply',
  closeTimeout: DEFAULT_CLOSE_TIMEOUT,
};

/** An endpoint's options: its own, then the module's, then the defaults. */
export function resolveEndpointOptions(
  moduleOptions: WsEndpointsModuleOptions,
  endpointOptions: WsEndpointOptions,
): ResolvedWsEndpointOptions {
  return {
    ...DEFAULTS,
    ...withoutUndefined(moduleOptions),
    ...withoutUndefined(endpointOptions),
  };
}

function withoutUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}
