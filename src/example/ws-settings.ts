import { ConfigService } from '@nestjs/config';
import { Redis } from 'ioredis';
import {
  RedisBackplane,
  type WsEndpointsModuleOptions,
} from 'nestjs-ws-endpoints';

/** The example's WebSocket settings, read from the environment; `.env.example` lists them. */
export function wsSettings(config: ConfigService): WsEndpointsModuleOptions {
  const number = (name: string): number | undefined => {
    const value = config.get<string>(name);
    if (value === undefined || value === '') return undefined;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < 0) {
      throw new Error(`${name} must be a non-negative number, got "${value}".`);
    }
    return parsed;
  };
  const interval = number('WS_HEARTBEAT_INTERVAL');
  const timeout = number('WS_HEARTBEAT_TIMEOUT');
  const origins = config.get<string>('WS_ALLOWED_ORIGINS');
  const grace = number('WS_PRESENCE_GRACE');
  const redis = config.get<string>('REDIS_URL');
  return {
    maxPayload: number('WS_MAX_PAYLOAD'),
    heartbeat:
      interval === 0
        ? false
        : interval === undefined && timeout === undefined
          ? undefined
          : { interval: interval ?? 30_000, timeout: timeout ?? 10_000 },
    allowedOrigins: !origins
      ? undefined
      : origins === '*'
        ? '*'
        : origins.split(',').map((origin) => origin.trim()),
    shutdownTimeout: number('WS_SHUTDOWN_TIMEOUT'),
    presence: grace === undefined ? undefined : { grace },
    // instances on one Redis share groups and presence: a room spans them all. The client is a
    // template the backplane makes its own connections from; it never connects itself
    backplane: redis
      ? new RedisBackplane(new Redis(redis, { lazyConnect: true }))
      : undefined,
  };
}
