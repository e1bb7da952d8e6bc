import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BrowserContext, chromium, Page } from 'playwright-core';
import { AppModule } from '../src/app.module';
import {
  CHROMIUM_ARGS,
  CHROMIUM_PATH,
  ensureChromium,
  inCi,
} from './utils/chromium';
import { CapturedLogs } from './utils/test-app';

// Installs Chromium where it can; under CI the suite runs (and fails) even where it cannot.
const unavailable = ensureChromium();
if (unavailable && !inCi)
  process.stderr.write(`Skipping the browser suite: ${unavailable}\n`);
const describeInBrowser = unavailable && !inCi ? describe.skip : describe;

/** The example app on `port` (0: any free one). */
async function startExample(port = 0): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [AppModule],
  }).compile();
  const app = moduleRef.createNestApplication({
    logger: new CapturedLogs(),
    // the browser keeps idle HTTP connections open: without this, close() would wait for them
    forceCloseConnections: true,
  });
  await app.listen(port, '127.0.0.1');
  return app;
}

describeInBrowser("the example page in Debian's Chromium", () => {
  let app: INestApplication | undefined;
  let browser: BrowserContext | undefined;
  let profile: string | undefined;
  let page: Page;
  let url: string;

  beforeAll(async () => {
    if (unavailable)
      throw new Error(
        `CI is set, so the browser suite must run, but ${unavailable}`,
      );
    app = await startExample();
    const { port } = app.getHttpServer().address() as AddressInfo;
    url = `ws://127.0.0.1:${port}/socket/handle`;
    profile = mkdtempSync(join(tmpdir(), 'chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      args: CHROMIUM_ARGS,
      headless: true,
    });
    page = await browser.newPage();
    // a missing element fails its test naming the locator, before jest's own timeout
    page.setDefaultTimeout(10_000);
    await page.goto(`http://127.0.0.1:${port}/`);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await app?.close();
  });

  const status = () => page.locator('#status');
  const line = (text: string | RegExp) =>
    page.locator('#display > div', { hasText: text });
  const type = async (text: string) => {
    await page.fill('#message', text);
    await page.press('#message', 'Enter');
  };

  it('shows in its status line that the connection is open', async () => {
    await status().getByText(`open: ${url}`, { exact: true }).waitFor();
    expect(await status().getAttribute('data-state')).toBe('open');
  });

  it("shows the user's message and the server's reply", async () => {
    await type('Hello from Chromium');
    await line('→ Hello from Chromium').waitFor();
    await line(
      /^← Your message: Hello from Chromium at \d{4}-\d\d-\d\dT/,
    ).waitFor();
  });

  it('sends the text as bytes and shows the binary echo as binary', async () => {
    await page.fill('#message', 'héllo');
    await page.click('#send-bytes');
    const bytes = 'binary, 6 bytes: 68 c3 a9 6c 6c 6f "héllo"';
    await line(`→ ${bytes}`).waitFor();
    await line(`← ${bytes}`).waitFor();
  });

  it('follows the server closing, reconnects to the restarted app with a backoff, and delivers what was typed meanwhile', async () => {
    const { port } = app!.getHttpServer().address() as AddressInfo;
    await app!.close();
    app = undefined;
    await line('closed (1001 Server shutting down)').waitFor();
    // the first retry comes after about 0.5 s; it fails, and the next one waits longer
    await page.waitForFunction(`(() => {
      const status = document.querySelector('#status').textContent;
      const delay = /^closed \\(1006\\); reconnecting in (\\d+\\.\\d) s$/.exec(status)?.[1];
      return Number(delay) >= 0.8;
    })()`);

    await type('typed while disconnected');
    const typed = line('→ typed while disconnected');
    await typed.and(page.locator('.pending')).waitFor();
    expect(await typed.textContent()).toContain(
      'pending: sent on reconnection',
    );

    app = await startExample(port);
    await status().getByText(`open: ${url}`, { exact: true }).waitFor();
    await line(/^← Your message: typed while disconnected at /).waitFor();
    expect(await typed.textContent()).toBe('→ typed while disconnected');
    expect(await page.locator('#display .pending').count()).toBe(0);
    // SCREENSHOT=docs/example-page.png npm test -- test/browser refreshes the README's picture
    if (process.env.SCREENSHOT)
      await page.screenshot({ path: process.env.SCREENSHOT });
  });
});
