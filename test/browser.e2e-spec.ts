import { INestApplication } from '@nestjs/common';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BrowserContext, chromium, Page } from 'playwright-core';
import { AppModule } from '../src/app.module';
import { startApp } from './utils/test-app';

/** Debian's Chromium, as this machine's closed network needs it started. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe("the example page in a real browser (Debian's Chromium)", () => {
  let app: INestApplication;
  let browser: BrowserContext;
  let page: Page;
  let profile: string;
  let appClosed = false;

  beforeAll(async () => {
    ({ app } = await startApp({ imports: [AppModule] }));
    profile = mkdtempSync(join(tmpdir(), 'chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
      headless: true,
    });
    page = await browser.newPage();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    rmSync(profile, { recursive: true, force: true });
    if (!appClosed) await app.close();
  });

  const display = () => page.locator('#display');

  it("sends a message through the seed's echo client and shows the reply", async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    await page.goto(`http://127.0.0.1:${port}/`);
    await display().getByText('connection', { exact: true }).waitFor();
    await page.fill('#message', 'Hello from Chromium');
    await page.press('#message', 'Enter');
    const reply = display().getByText(
      /^Your message: Hello from Chromium at \d{4}-\d\d-\d\dT/,
    );
    await reply.waitFor();
    // SCREENSHOT=docs/example-page.png npm test -- test/browser refreshes the README's picture
    if (process.env.SCREENSHOT)
      await page.screenshot({ path: process.env.SCREENSHOT });
  });

  it('shows the disconnection when the server closes', async () => {
    const closing = app.close();
    await display().getByText('disconnected (1001)').waitFor();
    // the HTTP server closes once the browser lets go of the connections it keeps open
    await browser.close();
    await closing;
    appClosed = true;
  });
});
