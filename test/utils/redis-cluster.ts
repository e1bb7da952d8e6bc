import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { until } from './until';

/**
 * A Redis Cluster of one node that owns every slot: what a Redis Cluster checks of each command
 * (its keys share one slot: CROSSSLOT), reachable with a plain client (no redirection).
 */
export class OneNodeCluster {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {}

  static async start(): Promise<OneNodeCluster> {
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    server.close();
    const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'));
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, 'nodes.conf'),
        '--dir',
        dir,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await until(
      () => output.includes('Ready to accept connections'),
      'redis-server starts',
      10_000,
    );
    const admin = new Redis(port, '127.0.0.1');
    try {
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
      let state = '';
      await until(
        () => {
          void admin
            .call('CLUSTER', 'INFO')
            .then((info) => (state = String(info)));
          return state.includes('cluster_state:ok');
        },
        'the cluster is up',
        10_000,
      );
    } finally {
      admin.disconnect();
    }
    return new OneNodeCluster(port, child, dir);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      this.child.kill('SIGKILL');
      await once(this.child, 'exit');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
