/** Metadata key written by `@Ws()` on the handler method. */
export const WS_ENDPOINT_METADATA = 'ws-endpoints:endpoint';

/** What `@Socket()` resolves to in the HTTP pipeline; the session runner puts the context in its place. */
export const SOCKET_ARGUMENT: unique symbol = Symbol('ws-endpoints:socket');

/** The injection token of the `Backplane` the module uses. @publicApi */
export const WS_BACKPLANE: unique symbol = Symbol('ws-endpoints:backplane');
