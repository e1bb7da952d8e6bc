import { ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

/** What an instance reported over IPC, in order. */
export type InstanceEvent =
  | { session: string; resumeFailed: boolean }
  | { processed: string }
  | { replied: string }
  | { listening: number };

/** How to start an instance: which app of test/fixtures/, and its environment. */
export interface InstanceOptions {
  /** @default 'instance' */
  fixture?: string;
  env?: Record<string, string>;
}

/**
 * An app of test/fixtures/ in a process of its own, so that a test can stop it (SIGTERM: a
 * graceful shutdown) or kill it (SIGKILL: a crash) and start another on its port.
 */
export class Instance {
  readonly events: InstanceEvent[] = [];
  readonly exited: Promise<unknown>;

  private constructor(readonly process: ChildProcess) {
    process.on('message', (event: InstanceEvent) => this.events.push(event));
    this.exited = once(process, 'exit');
  }

  /** Starts an instance on `port` (0: any) with Redis keys under `prefix`; resolves once it listens. */
  static async start(
    port: number,
    prefix: string,
    { fixture = 'instance', env }: InstanceOptions = {},
  ): Promise<Instance> {
    const root = join(__dirname, '../..');
    const child = fork(
      join(root, `test/fixtures/${fixture}.ts`),
      [String(port), prefix],
      {
        cwd: root,
        execArgv: [
          '-r',
          'ts-node/register/transpile-only',
          '-r',
          'tsconfig-paths/register',
        ],
        env: {
          ...process.env,
          ...env,
          TS_NODE_PROJECT: join(root, 'tsconfig.json'),
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    const instance = new Instance(child);
    const [listening] = (await Promise.race([
      once(child, 'message'),
      instance.exited.then(() => {
        throw new Error('The instance exited before it listened');
      }),
    ])) as [{ listening: number }];
    instance.port = listening.listening;
    return instance;
  }

  port = 0;

  get pid(): number {
    return this.process.pid!;
  }

  /** The texts of the requests its handler processed. */
  processed(): string[] {
    return this.events.flatMap((event) =>
      'processed' in event ? [event.processed] : [],
    );
  }

  send(command: string): void {
    this.process.send(command);
  }

  /** Stops it: SIGTERM shuts it down gracefully, SIGKILL is a crash. */
  async stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill(signal);
    }
    await this.exited;
  }
}
