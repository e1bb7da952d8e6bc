import { INestApplication } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import { connectWs, expectRejected } from 'nestjs-ws-endpoints/testing';
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

  it('answers a binary message on /socket/handle with the same bytes, as binary', async () => {
    const client = await connectWs(app, '/socket/handle');
    const bytes = Buffer.from([0x00, 0x01, 0xc3, 0xa9, 0xff]);
    client.send(bytes);
    const reply = await client.next();
    expect(reply.isBinary).toBe(true);
    expect(reply.data).toEqual(bytes);
    await client.close();
  });

  it('serves the echo client page at GET /', async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/`);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await response.text();
    expect(html).toContain('/socket/reliable');
    expect(html).toContain("from '/client.js'");
    expect(html).toContain('<div id="status"');
    expect(html).toContain('<button id="send-bytes"');
  });

  it('serves the client as one ES module at GET /client.js', async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/client.js`);
    expect(response.headers.get('content-type')).toMatch(/^text\/javascript/);
    const code = await response.text();
    expect(code).toMatch(/export\s*\{[^}]*\bconnect\b/);
    expect(code).not.toMatch(/\brequire\(|^import /m);
  });

  it('closes its sessions with 1001 when the app shuts down', async () => {
    const { app } = await startApp({ imports: [AppModule] });
    const client = await connectWs(app, '/socket/handle');
    await app.close();
    expect(await client.closed).toEqual({
      code: 1001,
      reason: 'Server shutting down',
    });
  });
});

describe('the example application settings (@nestjs/config + forRootAsync)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it('takes WS_MAX_PAYLOAD from the environment', async () => {
    process.env.WS_MAX_PAYLOAD = '16';
    const { app } = await startApp({ imports: [AppModule] });
    const client = await connectWs(app, '/socket/handle');
    client.send('x'.repeat(16));
    expect((await client.next()).text).toMatch(/^Your message: x{16} at /);
    client.send('x'.repeat(17));
    expect((await client.closed).code).toBe(1009);
    await app.close();
  });

  it('takes WS_ALLOWED_ORIGINS from the environment', async () => {
    process.env.WS_ALLOWED_ORIGINS =
      'https://app.example, https://admin.example';
    const { app } = await startApp({ imports: [AppModule] });
    await (
      await connectWs(app, '/socket/handle', {
        origin: 'https://admin.example',
      })
    ).close();
    await expectRejected(app, '/socket/handle', 403, {
      origin: 'https://evil.example',
    });
    await app.close();
  });

  it('refuses to start with a setting that is not a number, naming it', async () => {
    process.env.WS_HEARTBEAT_INTERVAL = 'soon';
    await expect(startApp({ imports: [AppModule] })).rejects.toThrow(
      'WS_HEARTBEAT_INTERVAL must be a non-negative number, got "soon".',
    );
  });
});
