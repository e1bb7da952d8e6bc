/** Metadata key written by `@Ws()` on the handler method. */
export const WS_ENDPOINT_METADATA = 'ws-endpoints:endpoint';
