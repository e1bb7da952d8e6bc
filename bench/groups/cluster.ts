// Groups across three instances over Redis: the delivery latency of group messages at a stated
// rate, each member on one of three instances (bench/servers/cluster.ts, processes of their own
// on one Redis: REDIS_URL, or the machine's); and what a presence entry costs, in Redis and in
// its instance's heap. `npm run bench -- --workloads=groups-cluster` runs it alone; without a
// Redis it says so and measures nothing.
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as wait } from 'node:timers/promises';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { fmt } from '../stats';
import type { GroupsPart, PartResult } from './part';

/** The value below which `fraction` of the sorted `values` are. */
function percentile(sorted: number[], fraction: number): number {
  return sorted.length
    ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]
    : NaN;
}

const INSTANCES = 3;

/** An instance's process; answers the queries of bench/servers/serve.ts. */
class Instance {
  private next = 0;
  private readonly answers = new Map<number, (answer: any) => void>();
  readonly port: Promise<number>;

  constructor(readonly child: ChildProcess) {
    this.port = new Promise((resolve) =>
      child.on('message', (message: any) => {
        if (message.ready) return resolve(message.ready);
        this.answers.get(message.id)?.(message);
        this.answers.delete(message.id);
      }),
    );
  }

  ask<T>(ask: string): Promise<T> {
    const id = ++this.next;
    return new Promise((resolve) => {
      this.answers.set(id, resolve);
      this.child.send({ id, ask });
    });
  }

  async stop(): Promise<void> {
    this.child.kill('SIGKILL');
    if (this.child.exitCode === null && this.child.signalCode === null) {
      await once(this.child, 'exit');
    }
  }
}

function startInstance(prefix: string): Instance {
  const file = join(__dirname, '..', 'servers', 'cluster.js');
  return new Instance(
    fork(file, [prefix], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
}

/** Opens `count` members on `port` and resolves once each has joined. */
async function members(
  port: number,
  count: number,
  meta: boolean,
  onMessage: (data: string) => void,
) {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const ws = new WebSocket(
        `ws://127.0.0.1:${port}/room?meta=${meta ? 1 : 0}`,
      );
      const joined = new Promise<void>((resolve) =>
        ws.on('message', (data: Buffer) => {
          const text = data.toString();
          if (text === 'joined') resolve();
          else onMessage(text);
        }),
      );
      await joined;
      return ws;
    }),
  );
}

export const clusterPart: GroupsPart = {
  id: 'groups-cluster',
  run: ({ quick, log }) => clusterBenchmark(quick, log),
};

async function clusterBenchmark(
  quick: boolean,
  log: (line: string) => void,
): Promise<PartResult> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const admin = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  });
  try {
    await admin.connect();
  } catch (error) {
    const why = `no Redis at ${url} (${(error as Error).message})`;
    log(`cluster: skipped, ${why}`);
    return {
      markdown: `### Groups across ${INSTANCES} instances over Redis\n\nNot measured: ${why}.\n`,
      json: { skipped: why },
      summary: [],
    };
  }
  const prefix = `bench:${randomUUID()}`;
  const instances = Array.from({ length: INSTANCES }, () =>
    startInstance(prefix),
  );
  const sockets: WebSocket[] = [];
  try {
    const ports = await Promise.all(instances.map((i) => i.port));
    const perInstance = quick ? 20 : 100;
    const rate = 100; // messages a second, over the three senders
    const seconds = quick ? 1 : 5;
    const latencies: number[] = [];
    let received = 0;
    const onMessage = (text: string) => {
      received++;
      latencies.push(performance.now() + performance.timeOrigin - Number(text));
    };
    for (const port of ports)
      sockets.push(...(await members(port, perInstance, false, onMessage)));
    const senders = ports.map((_, i) => sockets[i * perInstance]);
    log(
      `cluster: ${sockets.length} members on ${INSTANCES} instances, ${rate} messages/s for ${seconds} s`,
    );
    const total = rate * seconds;
    const interval = 1000 / rate;
    const started = performance.now();
    for (let n = 0; n < total; n++) {
      const due = started + n * interval;
      const now = performance.now();
      if (due > now) await wait(due - now);
      senders[n % senders.length].send(
        String(performance.now() + performance.timeOrigin),
      );
    }
    const expected = total * sockets.length;
    const deadline = performance.now() + 30_000;
    while (received < expected && performance.now() < deadline) await wait(50);
    latencies.sort((a, b) => a - b);
    const delivery = {
      members: sockets.length,
      rate,
      seconds,
      deliveries: received,
      expected,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
    };
    for (const ws of sockets.splice(0)) ws.terminate();

    // presence: batches of members on one instance, without meta, with, and without again; all
    // stay open, so that what a batch with meta adds beyond one without is its presence entries
    const count = quick ? 500 : 2000;
    const opened: WebSocket[] = [];
    const heapAfter = async (meta: boolean) => {
      opened.push(...(await members(ports[0], count, meta, () => undefined)));
      await wait(200);
      return (await instances[0].ask<{ heapUsed: number }>('memory')).heapUsed;
    };
    const before = (await instances[0].ask<{ heapUsed: number }>('memory'))
      .heapUsed;
    const plain = (await heapAfter(false)) - before;
    const listed = await heapAfter(true);
    const plainAgain = (await heapAfter(false)) - listed;
    const withMeta = listed - before - plain;
    let redisBytes = 0;
    for (const kind of ['p', 'pe', 'pk']) {
      redisBytes += Number(
        (await admin.memory('USAGE', `${prefix}:{bench}:${kind}`)) ?? 0,
      );
    }
    for (const ws of opened) ws.terminate();
    const presence = {
      entries: count,
      redisBytesPerEntry: redisBytes / count,
      heapBytesPerEntry: (withMeta - (plain + plainAgain) / 2) / count,
      heapBytesPerMember: (plain + plainAgain) / 2 / count,
    };
    const markdown = [
      `### Groups across ${INSTANCES} instances over Redis`,
      '',
      '| measure | value |',
      '| --- | --- |',
      `| delivery latency p50 / p99, ${rate} msg/s to ${delivery.members} members (${fmt(rate * delivery.members)} deliveries/s) | ${fmt(delivery.p50)} ms / ${fmt(delivery.p99)} ms |`,
      `| deliveries made / expected | ${delivery.deliveries} / ${delivery.expected} |`,
      `| a presence entry in Redis (its JSON, expiry and key count) | ${fmt(presence.redisBytesPerEntry)} B |`,
      `| a presence entry in its instance's heap | ${fmt(presence.heapBytesPerEntry)} B |`,
      `| a session in one group (its heap, session and membership) | ${fmt(presence.heapBytesPerMember / 1024)} KiB |`,
      '',
    ].join('\n');
    return {
      markdown,
      json: { delivery, presence },
      summary: [
        {
          measure: `delivery latency across ${INSTANCES} instances over Redis, p50 / p99 (${rate} msg/s to ${delivery.members} members)`,
          value: `${fmt(delivery.p50)} / ${fmt(delivery.p99)} ms`,
        },
        {
          measure: "a presence entry: in Redis / in its instance's heap",
          value: `${fmt(presence.redisBytesPerEntry, 0)} B / ${fmt(presence.heapBytesPerEntry, 0)} B`,
        },
      ],
    };
  } finally {
    for (const ws of sockets) ws.terminate();
    await Promise.all(instances.map((i) => i.stop()));
    const keys = await admin.keys(`${prefix}:*`);
    if (keys.length) await admin.del(...keys);
    admin.disconnect();
  }
}
