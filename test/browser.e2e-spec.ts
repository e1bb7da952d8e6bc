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

/** Debian's Chromium, headless, on a profile of its own that goes when it closes. */
async function launchChromium(): Promise<BrowserContext> {
  const profile = mkdtempSync(join(tmpdir(), 'chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    headless: true,
  });
  // Chromium's helper processes may still be writing there as it closes: retried, and a profile
  // left behind in /tmp is no failure of the test
  browser.on('close', () => {
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
    } catch {
      // left for the system's /tmp cleanup
    }
  });
  return browser;
}

/** An echo as the page shows it, its time left out. */
const withoutTime = (text: string) =>
  text.replace(/ at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, ' at <time>');

describeInBrowser("the example page in Debian's Chromium", () => {
  let example: Example | undefined;
  let browser: BrowserContext | undefined;
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
    browser = await launchChromium();
    page = await browser.newPage();
    // a missing element fails its test naming the locator, before jest's own timeout
    page.setDefaultTimeout(10_000);
    await page.goto(`http://127.0.0.1:${port}/`);
  }, 60_000);

  // a test that failed offline leaves the next ones online
  afterEach(() => browser?.setOffline(false));

  afterAll(async () => {
    await browser?.close();
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
  /** The app's one session on {@link PATH}: the page's echo (its dashboard has one too). */
  const serverSession = (): WebSocketContext => {
    const sessions = Array.from(example!.app.get(WebSocketSessions)).filter(
      (session) => session.request.url?.split('?', 1)[0] === PATH,
    );
    expect(sessions).toHaveLength(1);
    return sessions[0];
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
  }, 30_000);
});

describeInBrowser(
  "the example page's chat and dashboard in Debian's Chromium",
  () => {
    let example: Example | undefined;
    let browser: BrowserContext | undefined;
    let origin: string;

    beforeAll(async () => {
      if (unavailable)
        throw new Error(
          `CI is set, so the browser suite must run, but ${unavailable}`,
        );
      const saved = process.env.WS_PRESENCE_GRACE;
      // a member who leaves is gone from the list at once, rather than after 5 s
      process.env.WS_PRESENCE_GRACE = '0';
      try {
        example = await startExample();
      } finally {
        if (saved === undefined) delete process.env.WS_PRESENCE_GRACE;
        else process.env.WS_PRESENCE_GRACE = saved;
      }
      const { port } = example.app.getHttpServer().address() as AddressInfo;
      origin = `http://127.0.0.1:${port}`;
      browser = await launchChromium();
    }, 60_000);

    afterAll(async () => {
      await browser?.close();
      await example?.app.close();
    });

    /** A new page on the example, its echo and dashboard connected. */
    const openPage = async () => {
      const page = await browser!.newPage();
      page.setDefaultTimeout(10_000);
      await page.goto(`${origin}/`);
      await page.locator('#status[data-state="open"]').waitFor();
      await page.locator('#dash-status[data-state="open"]').waitFor();
      return page;
    };
    const join = async (page: Page, room: string, token: string) => {
      await page.fill('#chat-room', room);
      await page.fill('#chat-token', token);
      await page.click('#chat-join button');
      await page.locator('#chat-status[data-state="open"]').waitFor();
    };
    const say = async (page: Page, text: string) => {
      await page.fill('#chat-text', text);
      await page.press('#chat-text', 'Enter');
    };
    const members = (page: Page) =>
      page.locator('#chat-members li').allTextContents();
    /** Waits until the page's dashboard shows `open` sessions in all, `chat` of them on /chat/:room. */
    const dashboardShows = async (page: Page, open: number, chat: number) => {
      await page
        .locator('#dash-open', { hasText: new RegExp(`^${open}$`) })
        .waitFor();
      await page
        .locator('#dash-endpoints tr[data-endpoint="/chat/:room"] .open', {
          hasText: new RegExp(`^${chat}$`),
        })
        .waitFor();
    };

    it('lets two pages chat in one room: both show every message and both members, and the dashboard counts their sessions', async () => {
      const alice = await openPage();
      const bob = await openPage();
      // each page has its echo and its dashboard connected
      await dashboardShows(alice, 4, 0);

      await join(alice, 'garden', 'alice-token');
      await dashboardShows(alice, 5, 1);
      await alice.locator('#chat-members li', { hasText: 'alice' }).waitFor();

      await join(bob, 'garden', 'bob-token');
      await dashboardShows(alice, 6, 2);
      await dashboardShows(bob, 6, 2);
      await alice
        .locator('#chat-log .event', { hasText: 'bob joined' })
        .waitFor();
      for (const page of [alice, bob]) {
        await page.locator('#chat-members li', { hasText: 'bob' }).waitFor();
        expect(await members(page)).toEqual(['alice', 'bob']);
      }

      await say(alice, 'Hello from alice');
      await say(bob, 'Hello from bob');
      for (const page of [alice, bob]) {
        await page
          .locator('#chat-log .message', { hasText: 'bob: Hello from bob' })
          .waitFor();
        const said = await page.locator('#chat-log .message').allTextContents();
        expect(said.map((text) => text.replace(/^.*? (?=\w+: )/, ''))).toEqual([
          'alice: Hello from alice',
          'bob: Hello from bob',
        ]);
      }

      // SCREENSHOT=docs/example-page.png npm test -- test/browser refreshes the README's picture
      if (process.env.SCREENSHOT) {
        await alice.fill('#message', 'Hello');
        await alice.press('#message', 'Enter');
        await alice
          .locator('#display > div', { hasText: '← Your message: Hello' })
          .waitFor();
        await alice.locator('#dash-rate', { hasText: /^\d+\.\d$/ }).waitFor();
        await alice.screenshot({
          path: process.env.SCREENSHOT,
          fullPage: true,
        });
      }

      // an invalid message is refused with an error frame; the page stays in the room
      await say(alice, 'x'.repeat(501));
      await alice
        .locator('#chat-log .error', {
          hasText:
            'not sent: text must be shorter than or equal to 500 characters',
        })
        .waitFor();
      expect(
        await alice.locator('#chat-status').getAttribute('data-state'),
      ).toBe('open');

      // the chart has been drawn, and the rate is a number
      await alice.locator('#dash-rate', { hasText: /^\d+\.\d$/ }).waitFor();
      const drawn = await alice.evaluate(() => {
        const canvas =
          document.querySelector<HTMLCanvasElement>('#dash-chart')!;
        const { data } = canvas
          .getContext('2d')!
          .getImageData(0, 0, canvas.width, canvas.height);
        return data.some((value, index) => index % 4 === 3 && value > 0);
      });
      expect(drawn).toBe(true);

      // bob's page goes: its three sessions end, and he leaves the room
      await bob.close();
      await dashboardShows(alice, 3, 1);
      await alice
        .locator('#chat-log .event', { hasText: 'bob left' })
        .waitFor();
      expect(await members(alice)).toEqual(['alice']);
      await alice.close();
    }, 60_000);
  },
);
