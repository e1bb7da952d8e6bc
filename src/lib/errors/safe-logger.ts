import { Logger } from '@nestjs/common';

/**
 * Nest's `Logger`, whose calls cannot throw. The app's logger is user code too: a failure path,
 * a timer or an event listener that logs must not turn the logger's exception into a crash, nor
 * change the answer it was giving. What is logged is text only (`describeError` for values).
 */
export class SafeLogger {
  private readonly logger: Logger;

  constructor(context: string) {
    this.logger = new Logger(context);
  }

  error(message: string, detail?: string): void {
    this.safely(() =>
      detail === undefined
        ? this.logger.error(message)
        : this.logger.error(message, detail),
    );
  }

  warn(message: string): void {
    this.safely(() => this.logger.warn(message));
  }

  debug(message: string): void {
    this.safely(() => this.logger.debug(message));
  }

  private safely(log: () => void): void {
    try {
      log();
    } catch {
      // the app's logger failed: there is nowhere left to say it
    }
  }
}
