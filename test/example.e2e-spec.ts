import { INestApplication } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import { connectWs } from 'nestjs-ws-endpoints/testing';
import { AppModule } from '../src/app.module';
import { startApp } from './utils/test-app';

describe('the example application', () => {
  let app: INestApplication;

  beforeAll(async () => {
    ({ app } = await startApp({ imports: [AppModule] }));
  });

  afterAll(() => app.close());

  it("answers each message on /socket/handle with the seed's echo", async () => {
    const client = await connectWs(app, '/socket/handle');
    for (const text of ['Hello', 'второе сообщение']) {
      client.send(text);
      const reply = (await client.next()).text;
      const [, echoed, time] =
        /^Your message: (.*) at (\S+)$/.exec(reply) ?? [];
      expect(echoed).toBe(text);
      expect(new Date(time).toISOString()).toBe(time);
    }
    await client.close();
  });

  it('serves the echo client page at GET /', async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/`);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await response.text();
    expect(html).toContain('/socket/handle');
    expect(html).toContain("log('connection')");
  });
});
