import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { WebSocketContext, WebSocketSessions } from 'nestjs-ws-endpoints';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { BrowserContext, chromium, Page } from 'playwright-core';
import { AppModule } from '../src/app.module';
import {
  CHROMIUM_ARGS,
  CHROMIUM_PATH,
  ensureChromium,
  inCi,
} from './utils/chromium';
import { CapturedLogs } from './utils/test-app';
import { until } from './utils/until';

// Installs Chromium where it can; under CI the suite runs (and fails) even where it cannot.
const unavailable = ensureChromium();
if (unavailable && !inCi)
  process.stderr.write(`Skipping the browser suite: ${unavailable}\n`);
const describeInBrowser = unavailable && !inCi ? describe.skip : describe;

const PATH = '/socket/reliable';

interface Example {
  app: INestApplication;
  /** The server's side of each connection the page made to {@link PATH}, oldest first. */
  connections: Duplex[];
}

/** The example app on `port` (0: any free one). */
async function startExample(port = 0): Promise<Example> {
  const moduleRef = await Test.createTestingModule({
    imports: [AppModule],
  }).compile();
  const app = moduleRef.createNestApplication({
    logger: new CapturedLogs(),
    // the browser keeps idle HTTP connections open: without this, close() would wait for them
    forceCloseConnections: true,
  });
  await app.listen(port, '127.0.0.1');
  return { app, connections: watchUpgrades(app.getHttpServer(), PATH) };
}

/**
 * The server's side of each WebSocket connection to `path`: destroying one is a connection lost
 * on the network, which a reliable session outlives (`WebSocketContext.terminate()` ends the
 * session instead). The app claims its upgrades in `server.emit`, before any `upgrade` listener
 * could see them, so this looks at them there, around the app's own.
 */
function watchUpgrades(server: Server, path: string): Duplex[] {
  const connections: Duplex[] = [];
  const emit = server.emit.bind(server) as (...args: unknown[]) => boolean;
  server.emit = ((...args: unknown[]) => {
    const [event, request, socket] = args;
    if (
      event === 'upgrade' &&
      (request as IncomingMessage).url?.split('?', 1)[0] === path
    )
      connections.push(socket as Duplex);
    return emit(...args);
  }) as Server['emit'];
  return connections;
}

/** An echo as the page shows it, its time left out. */
const withoutTime = (text: string) =>
  text.replace(/ at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, ' at <time>');

describeInBrowser("the example page in Debian's Chromium", () => {
  let example: Example | undefined;
  let browser: BrowserContext | undefined;
  let profile: string | undefined;
  let page: Page;
  let url: string;

  beforeAll(async () => {
    if (unavailable)
      throw new Error(
        `CI is set, so the browser suite must run, but ${unavailable}`,
      );
    example = await startExample();
    const { port } = example.app.getHttpServer().address() as AddressInfo;
    url = `ws://127.0.0.1:${port}${PATH}`;
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

  // a test that failed offline leaves the next ones online
  afterEach(() => browser?.setOffline(false));

  afterAll(async () => {
    await browser?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await example?.app.close();
  });

  const status = (state?: string) =>
    page.locator(state ? `#status[data-state="${state}"]` : '#status');
  const line = (text: string | RegExp) =>
    page.locator('#display > div', { hasText: text });
  const type = async (text: string) => {
    await page.fill('#message', text);
    await page.press('#message', 'Enter');
  };
  /** What the log shows of the user's messages and the server's, among those containing `tag`. */
  const conversation = async (tag: string) => {
    const lines = await page.locator('#display > div').allTextContents();
    const tagged = lines.filter((text) => text.includes(tag));
    return {
      mine: tagged.filter((text) => text.startsWith('→ ')),
      echoes: tagged.filter((text) => text.startsWith('← ')).map(withoutTime),
    };
  };
  /** The id of the session the page's client is on, as the page says it. */
  const pageSession = async () => {
    const said = await page
      .locator('#display > div.event', {
        hasText: /^(connected: new|resumed) session /,
      })
      .last()
      .textContent();
    return /session (\S+?);?(?: |$)/.exec(said ?? '')?.[1];
  };
  /** The app's one session: the page's. */
  const serverSession = (): WebSocketContext => {
    const sessions = example!.app.get(WebSocketSessions);
    expect(sessions.size).toBe(1);
    const [session, ...others] = sessions;
    expect(others).toEqual([]);
    return session;
  };
  /**
   * The server's side of the page's connection, the only one open; destroying it drops the
   * connection without a close frame.
   */
  const liveConnection = () => {
    const live = example!.connections.filter((socket) => !socket.destroyed);
    expect(live).toHaveLength(1);
    return live[0];
  };

  it('shows in its status line that the connection is open, on a new session', async () => {
    await status('open').getByText(`open: ${url}`, { exact: true }).waitFor();
    await line(/^connected: new session \S+$/).waitFor();
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

  it('shows while offline that it is reconnecting, keeps what is typed as pending, and once online resumes the session and shows each echo once, in order', async () => {
    await status('open').waitFor();
    const session = serverSession();
    const id = await pageSession();
    expect(id).toBeDefined();

    await browser!.setOffline(true);
    // the client's next try is refused by the browser, offline: the page stays reconnecting
    const refused = page.waitForEvent('console', (message) =>
      message.text().includes('net::ERR_INTERNET_DISCONNECTED'),
    );
    // Chromium's offline emulation leaves an open WebSocket open (it holds its frames): the
    // connection is dropped on the server's side too, as a network that went away would
    liveConnection().destroy();
    await status('reconnecting')
      .getByText('messages typed now are kept and delivered')
      .waitFor();
    await until(
      () => session.state === 'reconnecting',
      'the server keeps the session for its client',
    );
    await refused;
    expect(await status().getAttribute('data-state')).toBe('reconnecting');

    const typed = ['offline 1', 'offline 2', 'offline 3'];
    for (const text of typed) {
      await type(text);
      await line(`→ ${text}`)
        .and(page.locator('.pending'))
        .getByText('pending: delivered once the connection is back')
        .waitFor();
    }
    expect(example!.connections.filter((socket) => !socket.destroyed)).toEqual(
      [],
    );

    await browser!.setOffline(false);
    await status('open').getByText(`open: ${url}`, { exact: true }).waitFor();
    await line(`resumed session ${id}`).waitFor();
    // sent after the others on the same session: once its echo is shown, theirs all came
    await type('offline 4: back online');
    await line(/^← Your message: offline 4: back online at /).waitFor();

    expect(await conversation('offline ')).toEqual({
      mine: [...typed, 'offline 4: back online'].map((text) => `→ ${text}`),
      echoes: [...typed, 'offline 4: back online'].map(
        (text) => `← Your message: ${text} at <time>`,
      ),
    });
    expect(await page.locator('#display .pending').count()).toBe(0);
    expect(serverSession()).toBe(session);
    expect(session.resumed).toBe(true);
  });

  it('follows the server dropping the connection while the user types: reconnects, resumes the same session, and shows each echo once, in order', async () => {
    await status('open').waitFor();
    const session = serverSession();
    const id = await pageSession();
    const resumes = await line(`resumed session ${id}`).count();
    // every state the status line shows from here on, however briefly
    await page.evaluate(() => {
      const status = document.querySelector<HTMLElement>('#status')!;
      const states = [status.dataset.state];
      (window as unknown as { states: unknown }).states = states;
      new MutationObserver(() => {
        if (states.at(-1) !== status.dataset.state)
          states.push(status.dataset.state);
      }).observe(status, { attributeFilter: ['data-state'] });
    });

    await type('drop 1');
    await line(/^← Your message: drop 1 at /).waitFor();
    // in flight when the connection drops: an echo the server wrote and the page never got…
    const connection = liveConnection();
    connection.cork();
    await type('drop 2');
    const echo = 'Your message: drop 2 at 2000-01-01T00:00:00.000Z';
    await until(
      () => connection.writableLength > echo.length, // more than an ack
      'the server echoes "drop 2"',
    );
    // …and a message the page sent and the server never read
    connection.pause();
    await type('drop 3');
    connection.destroy();
    await type('drop 4');
    await type('drop 5');

    const resumed = line(`resumed session ${id}`).nth(resumes);
    await resumed.waitFor();
    await status('open').getByText(`open: ${url}`, { exact: true }).waitFor();
    // sent after the others on the same session: once its echo is shown, theirs all came
    await type('drop 6: after the resume');
    await line(/^← Your message: drop 6: after the resume at /).waitFor();

    expect(await page.evaluate('window.states')).toEqual([
      'open',
      'reconnecting',
      'open',
    ]);
    const typed = [1, 2, 3, 4, 5].map((n) => `drop ${n}`);
    typed.push('drop 6: after the resume');
    expect(await conversation('drop ')).toEqual({
      mine: typed.map((text) => `→ ${text}`),
      echoes: typed.map((text) => `← Your message: ${text} at <time>`),
    });
    // the echoes lost with the connection came with the resumed session
    const lines = await page.locator('#display > div').allTextContents();
    const resumedAt = lines.lastIndexOf(`resumed session ${id}`);
    for (const text of ['drop 2', 'drop 3'])
      expect(
        lines.findIndex((line) =>
          line.startsWith(`← Your message: ${text} at`),
        ),
      ).toBeGreaterThan(resumedAt);
    expect(await page.locator('#display .pending').count()).toBe(0);
    expect(serverSession()).toBe(session);
    expect(session.resumed).toBe(true);
  });

  it('follows the app shutting down, reconnects to the restarted app on a new session, and delivers what was typed meanwhile', async () => {
    const { port } = example!.app.getHttpServer().address() as AddressInfo;
    const id = await pageSession();
    await example!.app.close();
    example = undefined;
    await status('reconnecting').waitFor();

    await type('typed while disconnected');
    const typed = line('→ typed while disconnected');
    await typed.and(page.locator('.pending')).waitFor();
    expect(await typed.textContent()).toContain(
      'pending: delivered once the connection is back',
    );

    example = await startExample(port);
    // the client retries with a growing delay, up to 10 s apart
    await status('open')
      .getByText(`open: ${url}`, { exact: true })
      .waitFor({ timeout: 15_000 });
    await line(
      new RegExp(
        `^connected: new session \\S+; session ${id} could not be resumed$`,
      ),
    ).waitFor();
    await line(/^← Your message: typed while disconnected at /).waitFor();
    expect(await typed.textContent()).toBe('→ typed while disconnected');
    expect(await page.locator('#display .pending').count()).toBe(0);
    // SCREENSHOT=docs/example-page.png npm test -- test/browser refreshes the README's picture
    if (process.env.SCREENSHOT)
      await page.screenshot({ path: process.env.SCREENSHOT });
  }, 30_000);
});
