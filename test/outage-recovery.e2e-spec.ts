// Two instances of test/fixtures/cluster-instance.ts on one Redis, the first through a proxy that
// can cut it off from Redis while Redis keeps its data (a network partition, a failover): what a
// reliable member got from its own instance during the partition must count as got when its
// client later recovers the room through another session.
import { randomUUID } from 'node:crypto';
import { FaultProxy } from './utils/fault-proxy';
import { ClientMember } from './utils/group-harness';
import { Instance } from './utils/instance';
import { describeWithRedis, REDIS_URL } from './utils/redis';
import { until as untilWithin } from './utils/until';

const until = (condition: () => boolean, what: string, timeout = 15_000) =>
  untilWithin(condition, what, timeout);

/** The chat texts a member got (`from:text`), with the group each came with. */
function chat(member: ClientMember) {
  return member.got.flatMap((m) => {
    const body = JSON.parse(m.text) as { from?: string; text?: string };
    return body.text === undefined
      ? []
      : [{ text: `${body.from}:${body.text}`, group: m.group }];
  });
}

describeWithRedis('group messages across a partition from Redis', () => {
  const instances: Instance[] = [];
  const members: ClientMember[] = [];
  let proxy: FaultProxy;
  let prefix: string;

  beforeEach(async () => {
    prefix = `outage:${randomUUID()}`;
    proxy = await FaultProxy.start({
      port: Number(new URL(REDIS_URL).port) || 6379,
    });
  });

  afterEach(async () => {
    for (const member of members.splice(0)) member.client.close();
    await Promise.all(instances.splice(0).map((i) => i.stop('SIGKILL')));
    await proxy.close();
  });

  function member(instance: Instance, user: string) {
    const made = new ClientMember(
      `ws://127.0.0.1:${instance.port}/room/lobby?user=${user}`,
      { reconnect: { initialDelay: 20, maxDelay: 100 } },
    );
    members.push(made);
    return made;
  }

  const joins = (member: ClientMember) =>
    member.got.filter((m) => m.text.includes('"joined"')).length;

  it('a reliable member gets a message sent on its instance during the partition once, even after its client recovers the room elsewhere', async () => {
    const a = await Instance.start(0, prefix, {
      fixture: 'cluster-instance',
      env: { REDIS_URL: `redis://127.0.0.1:${proxy.port}` },
    });
    const b = await Instance.start(0, prefix, { fixture: 'cluster-instance' });
    instances.push(a, b);
    const rita = member(a, 'rita');
    const ann = member(a, 'ann');
    const sam = member(b, 'sam');
    await until(
      () => [rita, ann, sam].every((m) => joins(m) === 1),
      'all join',
    );
    sam.client.send({ text: 'before' });
    await until(() => chat(rita).length === 1, 'rita gets the first');
    // a is cut off from Redis; Redis keeps everything
    proxy.refuse();
    proxy.cutAll();
    ann.client.send({ text: 'during' });
    await until(
      () => chat(rita).length === 2,
      'rita gets it from her instance',
    );
    proxy.allow();
    await until(
      () => chat(sam).some((m) => m.text === 'ann:during'),
      'sam gets it once a is back',
    );
    // ann is done (her client would send again what a had not acked); rita's instance then
    // crashes, a new one takes its port, and her client recovers the room there
    ann.client.close();
    await a.stop('SIGKILL');
    instances.push(
      await Instance.start(a.port, prefix, { fixture: 'cluster-instance' }),
    );
    await until(() => joins(rita) === 2, 'rita joins again');
    sam.client.send({ text: 'after' });
    await until(
      () => chat(rita).some((m) => m.text === 'sam:after'),
      'rita gets the next',
    );
    expect(chat(rita).map((m) => m.text)).toEqual([
      'sam:before',
      'ann:during',
      'sam:after',
    ]);
    expect(rita.lost).toEqual([]);
  });

  it('a message a reliable member got from its own instance during the partition comes with its group, as every group message does', async () => {
    const a = await Instance.start(0, prefix, {
      fixture: 'cluster-instance',
      env: { REDIS_URL: `redis://127.0.0.1:${proxy.port}` },
    });
    instances.push(a);
    const rita = member(a, 'rita');
    await until(() => joins(rita) === 1, 'rita joins');
    rita.client.send({ text: 'up' });
    await until(() => chat(rita).length === 1, 'the first');
    proxy.refuse();
    proxy.cutAll();
    rita.client.send({ text: 'during' });
    await until(() => chat(rita).length === 2, 'the second, from her instance');
    expect(chat(rita)).toEqual([
      { text: 'rita:up', group: 'lobby' },
      { text: 'rita:during', group: 'lobby' },
    ]);
  });
});
