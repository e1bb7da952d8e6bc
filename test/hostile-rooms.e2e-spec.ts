// A peer of a chat that names its room in a message (test/fixtures/rooms-instance.ts, in a
// process of its own on Redis) names one the app cannot foresee: the instance must stay up for
// everyone else.
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { connect, type WsClient } from 'nestjs-ws-endpoints/client';
import { Instance } from './utils/instance';
import { describeWithRedis } from './utils/redis';
import { until } from './utils/until';

describeWithRedis('rooms named by peers, over Redis', () => {
  let instance: Instance;
  const clients: WsClient[] = [];
  const sockets: WebSocket[] = [];

  beforeEach(async () => {
    instance = await Instance.start(0, `hostile:${randomUUID()}`, {
      fixture: 'rooms-instance',
    });
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const ws of sockets.splice(0)) ws.terminate();
    await instance.stop('SIGKILL');
  });

  it('a reliable peer that joins a room named with a lone surrogate and talks in it does not bring the instance down', async () => {
    const url = `ws://127.0.0.1:${instance.port}`;
    // a bystander in the lobby
    const bystander = new WebSocket(`${url}/plain`);
    sockets.push(bystander);
    const heard: unknown[] = [];
    bystander.on('message', (data: Buffer) =>
      heard.push(JSON.parse(data.toString())),
    );
    bystander.on('error', () => undefined);
    await new Promise((resolve) => bystander.once('open', resolve));
    bystander.send(JSON.stringify({ join: 'lobby' }));
    await until(() => heard.length === 1, 'the bystander joins');
    // the hostile peer: JSON lets it name a string that is no valid Unicode
    const hostile = connect(`${url}/reliable`, {
      WebSocket: WebSocket as never,
      reconnect: false,
    });
    clients.push(hostile);
    const answers: unknown[] = [];
    hostile.on('message', (m) => answers.push(m.json()));
    hostile.send({ join: 'x\ud800' });
    await until(() => answers.length === 1, 'the join is answered');
    hostile.send({ text: 'boom' });
    await until(() => answers.length >= 2, 'the hostile message is sent');
    bystander.send(JSON.stringify({ text: 'still here?' }));
    await until(
      () => heard.some((m) => (m as { text?: string }).text === 'still here?'),
      'the bystander hears the lobby',
      5000,
    ).catch((error: Error) => {
      throw new Error(
        `${error.message} (instance exit code ${instance.process.exitCode}, bystander readyState ${bystander.readyState})`,
      );
    });
    expect(instance.process.exitCode).toBeNull();
  });
});
