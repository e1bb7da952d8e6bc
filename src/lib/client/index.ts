export { connect, WsClient } from './ws-client';
export type {
  ClientState,
  CloseCodes,
  ConnectOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './ws-client';
export { ClientMessage, RequestError } from './client-message';
export type { BackoffOptions } from './backoff';
export type { Welcome } from '../protocol/envelope';
