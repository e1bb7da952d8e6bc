/**
 * What happens when a message handed to `receive(Dto)` / `messages(Dto)` is not valid JSON or
 * fails the pipes: `'reply'` sends an error frame and skips the message, `'close'` closes with 1007.
 */
export type ValidationPolicy = 'reply' | 'close';

/**
 * Options of one WebSocket endpoint. Given to `WsEndpointsModule.forRoot()` they are the defaults of
 * every endpoint; given to `@Ws(path, options)` they override those defaults for that endpoint.
 *
 * @example
 * WsEndpointsModule.forRoot({ maxPayload: 64 * 1024, validation: 'close' })
 * @publicApi
 */
export interface WsEndpointOptions {
  /**
   * Largest message accepted, in bytes; a larger one closes the connection with 1009.
   * @default 1048576 (1 MiB)
   */
  maxPayload?: number;
  /**
   * What to do with a message that is not valid JSON or fails validation in `receive(Dto)`.
   * @default 'reply'
   */
  validation?: ValidationPolicy;
  /**
   * How long `close()` waits for the peer to answer the close frame before it drops the connection, in ms.
   * @default 5000
   */
  closeTimeout?: number;
}

/** Options of `WsEndpointsModule.forRoot()`: the defaults of every endpoint. @publicApi */
export type WsEndpointsModuleOptions = WsEndpointOptions;

/** `WsEndpointOptions` with every default filled in. */
export type ResolvedWsEndpointOptions = Required<WsEndpointOptions>;
