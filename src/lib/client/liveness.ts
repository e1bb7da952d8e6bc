/**
 * Notices a connection that went silent, a half-open one a browser cannot see (it has no access
 * to protocol pings): after `interval` ms without a frame from the server it pings in the
 * envelope, and `timeout` ms more without one it declares the connection dead. So a dead
 * connection is noticed within `interval` + `timeout`.
 */
export class Liveness {
  private lastHeard = 0;
  private pinged = false;
  private timer?: ReturnType<typeof setTimeout>;

  constructor(
    private readonly interval: number,
    private readonly timeout: number,
    private readonly ping: () => void,
    private readonly dead: () => void,
  ) {}

  /** A frame came from the server. */
  heard(): void {
    this.lastHeard = Date.now();
    this.pinged = false;
  }

  /** Starts watching a connection that has just said welcome. */
  start(): void {
    this.heard();
    this.arm(this.interval);
  }

  /** Asks now (the browser says it went offline), unless a ping is already out. */
  check(): void {
    if (this.timer !== undefined && !this.pinged) this.probe();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(delay: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.pinged) return this.dead();
      const idle = Date.now() - this.lastHeard;
      if (idle < this.interval) return this.arm(this.interval - idle);
      this.probe();
    }, delay);
  }

  private probe(): void {
    this.pinged = true;
    this.ping();
    this.arm(this.timeout);
  }
}
