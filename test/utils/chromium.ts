import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Debian's Chromium, which the browser suite drives through playwright-core. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** The flags Debian's Chromium needs on this machine's closed network, headless, as root. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Whether `CI` is set, where the browser suite must run rather than be skipped. */
export const inCi = !['', '0', 'false'].includes(process.env.CI ?? '');

/**
 * Makes sure Debian's Chromium is at {@link CHROMIUM_PATH}: when it is missing and this process
 * may install it (root, with apt-get), runs `apt-get update` and `apt-get install -y chromium`.
 * @returns why the browser suite cannot run, or `undefined` when Chromium is there
 */
export function ensureChromium(): string | undefined {
  if (existsSync(CHROMIUM_PATH)) return undefined;
  const missing = `${CHROMIUM_PATH} is missing`;
  if (process.getuid?.() !== 0)
    return `${missing}, and only root can install it (apt-get install -y chromium).`;
  if (!existsSync('/usr/bin/apt-get'))
    return `${missing}, and this machine has no apt-get to install it with.`;
  process.stderr.write(
    `${missing}: installing Debian's chromium with apt-get for the browser suite…\n`,
  );
  const aptGet = (...args: string[]) =>
    // waits for the dpkg lock rather than failing when another install holds it
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 15 * 60_000,
    });
  try {
    aptGet('update', '-qq');
    aptGet('install', '-y', '-qq', 'chromium');
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim();
    return `${missing}, and apt-get could not install it: ${stderr || String(error)}`;
  }
  return existsSync(CHROMIUM_PATH)
    ? undefined
    : `${missing}, even after apt-get installed chromium.`;
}
