export { connect, WsClient } from './ws-client';
export type {
  ClientEvents,
  ClientState,
  CloseCodes,
  ConnectOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './client-options';
export { ClientMessage, RequestError } from './client-message';
export type { BackoffOptions } from './backoff';
export type { Welcome } from '../protocol/envelope';
