import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { until } from './until';

/** The Redis of the tests that share one: `REDIS_URL`, or the machine's. */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const MISSING = `These tests need Redis at ${REDIS_URL}: start one with \`redis-server --port 6379 --daemonize yes\`, or set REDIS_URL.`;

/** Whether Redis answers at REDIS_URL (asked from a child process: describe blocks are synchronous). */
function redisAnswers(): boolean {
  const { hostname, port } = new URL(REDIS_URL);
  const probe = `const s = require('node:net').connect(${Number(port) || 6379}, ${JSON.stringify(hostname)});
s.setTimeout(2000, () => process.exit(1)); s.on('error', () => process.exit(1));
s.on('data', (d) => process.exit(String(d).startsWith('+PONG') || String(d).startsWith('-NOAUTH') ? 0 : 1));
s.write('PING\\r\\n');`;
  try {
    execFileSync(process.execPath, ['-e', probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * `describe`, for a suite that needs the shared Redis. Without one it fails, saying how to start
 * one; only where neither CI nor REDIS_URL is set is it skipped, with that message printed.
 */
export function describeWithRedis(name: string, suite: () => void): void {
  if (redisAnswers()) return describe(name, suite);
  if (process.env.CI || process.env.REDIS_URL) {
    return describe(name, () => {
      it('has a Redis to run against', () => {
        throw new Error(MISSING);
      });
    });
  }
  console.warn(`Skipped "${name}". ${MISSING}`);
  describe.skip(name, suite);
}

/** A redis-server of a suite's own, on a free port, which a test can stop and start again. */
export class PrivateRedis {
  private process?: ChildProcess;

  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateRedis> {
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    server.close();
    const redis = new PrivateRedis(port);
    await redis.up();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts it, empty: it keeps nothing on disk. */
  async up(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    this.process = child;
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await until(
      () => output.includes('Ready to accept connections'),
      'redis-server starts',
      10_000,
    );
  }

  /** Kills it, as a crash would. */
  async down(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
}
