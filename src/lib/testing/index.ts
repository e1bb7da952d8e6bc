export { connectWs, expectRejected, wsUrl } from './connect';
export type { ConnectOptions, RejectedUpgrade, WsTarget } from './connect';
export { WsTestClient } from './ws-test-client';
export type { CloseEvent, ReceivedMessage } from './ws-test-client';
