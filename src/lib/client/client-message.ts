/** A message from the server, as the client gives it. @publicApi */
export class ClientMessage {
  constructor(
    /** A text message's text, or a binary message's bytes. */
    readonly data: string | Uint8Array,
    /** The group it was sent to (`broadcaster.to(group)`, reliable mode). */
    readonly group?: string,
  ) {}

  /** `'text'` or `'binary'`. */
  get type(): 'text' | 'binary' {
    return typeof this.data === 'string' ? 'text' : 'binary';
  }

  /** The payload as text (a binary one decoded as UTF-8). */
  get text(): string {
    return typeof this.data === 'string'
      ? this.data
      : new TextDecoder().decode(this.data);
  }

  /**
   * The payload parsed as JSON.
   * @throws SyntaxError when it is not JSON
   */
  json<T = unknown>(): T {
    return JSON.parse(this.text) as T;
  }
}

/** A request the server answered with a failure (`socket.replyError`), or that timed out. @publicApi */
export class RequestError extends Error {
  constructor(
    /** The HTTP-like status: 400 for a message the pipes refused, 408 for a timeout, … */
    readonly status: number,
    message: string | string[],
  ) {
    super(Array.isArray(message) ? message.join('; ') : message);
    this.name = 'RequestError';
  }
}
