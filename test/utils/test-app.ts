import {
  INestApplication,
  LoggerService,
  ModuleMetadata,
} from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { inspect } from 'node:util';

/** `String(value)`, or what can be said of a value without one (a null-prototype object, a throwing `message`). */
function text(value: unknown): string {
  for (const form of [String, inspect]) {
    try {
      return form(value);
    } catch {
      // no such form: try the next
    }
  }
  return Object.prototype.toString.call(value);
}

/** Every line an app logged, by level. */
export class CapturedLogs implements LoggerService {
  readonly lines: { level: string; message: string; context?: string }[] = [];

  constructor() {
    // TEST_LOGS=1 npm test prints what the apps log, for debugging
    if (process.env.TEST_LOGS) {
      const push = this.lines.push.bind(this.lines);
      this.lines.push = (...lines) => (
        lines.forEach((line) => console.log(line.level, line.message)),
        push(...lines)
      );
    }
  }

  log(message: unknown, context?: string) {
    this.lines.push({ level: 'log', message: text(message), context });
  }
  error(message: unknown, ...rest: unknown[]) {
    this.lines.push({
      level: 'error',
      message: [message, ...rest].map(text).join(' '),
    });
  }
  warn(message: unknown, context?: string) {
    this.lines.push({ level: 'warn', message: text(message), context });
  }
  debug(message: unknown, context?: string) {
    this.lines.push({ level: 'debug', message: text(message), context });
  }

  /** Lines at `level` whose message contains `text`. */
  find(level: string, text: string) {
    return this.lines.filter(
      (line) => line.level === level && line.message.includes(text),
    );
  }

  /** How many lines were logged at `level` so far. */
  count(level: string): number {
    return this.lines.filter((line) => line.level === level).length;
  }
}

/** The HTTP platforms that platform-sensitive suites run on, with `describe.each(platforms)`. */
export const platforms = ['express', 'fastify'] as const;
export type Platform = (typeof platforms)[number];

export interface TestApp {
  app: INestApplication;
  logs: CapturedLogs;
}

/**
 * A real Nest app from `metadata`, configured by `setup` (global prefix, versioning, global
 * guards…), listening on port 0 with its logs captured.
 */
export async function startApp(
  metadata: ModuleMetadata,
  setup: (app: INestApplication) => void = () => undefined,
  platform: Platform = 'express',
): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule(metadata).compile();
  const logs = new CapturedLogs();
  const app =
    platform === 'fastify'
      ? moduleRef.createNestApplication(new FastifyAdapter(), { logger: logs })
      : moduleRef.createNestApplication({ logger: logs });
  setup(app);
  await app.listen(0, '127.0.0.1');
  return { app, logs };
}
