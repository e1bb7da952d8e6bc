/** One message received from the peer. @publicApi */
export class WebSocketMessage {
  constructor(
    /** The payload; a text message's UTF-8 bytes. */
    readonly data: Buffer,
    /** `'text'` for a text frame, `'binary'` for a binary one. */
    readonly type: 'text' | 'binary',
    /**
     * The request's id, when the client sent the message as a request (`client.request()`):
     * answer it with `socket.reply(message, data)`. `undefined` for other messages.
     */
    readonly id?: string,
  ) {}

  /** The payload decoded as UTF-8. */
  get text(): string {
    return this.data.toString('utf8');
  }

  /**
   * The payload parsed as JSON.
   * @throws SyntaxError when it is not JSON
   * @example const { n } = message.json<{ n: number }>();
   */
  json<T = unknown>(): T {
    return JSON.parse(this.text) as T;
  }
}
