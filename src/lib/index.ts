export { WsEndpointsModule } from './ws-endpoints.module';
export { WS_ENDPOINTS_OPTIONS } from './ws-endpoints.module-definition';
export { Ws } from './decorators/ws.decorator';
export { Socket } from './decorators/socket.decorator';
export { WebSocketContext } from './context/websocket-context';
export type { ReceiveOptions } from './transport/inbound-queue';
export type { SendOptions } from './context/websocket-context';
export { WebSocketMessage } from './context/websocket-message';
export { CloseCode } from './context/close-code.enum';
export { WebSocketDisconnect } from './errors/ws-disconnect.exception';
export { WebSocketSessions } from './session/websocket-sessions';
export { WsMetrics } from './metrics/ws-metrics';
export type { WsMetricsSnapshot } from './metrics/ws-metrics-snapshot';
export { isWebSocketUpgrade } from './upgrade/is-websocket-upgrade';
export type {
  AllowedOrigins,
  HeartbeatOptions,
  ValidationPolicy,
  WsEndpointOptions,
  WsEndpointsModuleOptions,
} from './interfaces/ws-endpoint-options.interface';
export type {
  IdempotencyStore,
  RequestClaim,
  StoredReply,
} from './reliable/idempotency-store';
export { MemoryIdempotencyStore } from './reliable/memory-idempotency-store';
export {
  RedisIdempotencyStore,
  type RedisIdempotencyStoreOptions,
} from './reliable/redis-idempotency-store';
export type {
  ReliableOptions,
  RequestsOptions,
} from './interfaces/ws-endpoint-options.interface';
export { Broadcaster, Broadcast } from './groups/broadcaster';
export type { JoinResult } from './groups/group-hub';
export type { JoinOptions } from './context/websocket-context';
export { Presence } from './groups/presence';
export type { PresenceEvent, PresenceMember } from './groups/presence-events';
export { WS_BACKPLANE } from './constants';
export type {
  Backplane,
  BackplaneReceiver,
  GroupHistory,
  PresenceDiff,
  PresenceEntry,
  Publication,
  StreamPosition,
} from './backplane/backplane';
export {
  MemoryBackplane,
  type MemoryBackplaneOptions,
} from './backplane/memory-backplane';
export type { PresenceOptions } from './interfaces/ws-endpoint-options.interface';
export {
  RedisBackplane,
  type RedisBackplaneOptions,
} from './backplane/redis-backplane';
export type { OutageLimits } from './backplane/outage-buffer';
