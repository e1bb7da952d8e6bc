/** Metadata key written by `@Ws()` on the handler method. */
export const WS_ENDPOINT_METADATA = 'ws-endpoints:endpoint';

/** Default `maxPayload`: 1 MiB. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** How long `close()` waits for the peer's close frame before it terminates the socket. */
export const DEFAULT_CLOSE_TIMEOUT = 5_000;
