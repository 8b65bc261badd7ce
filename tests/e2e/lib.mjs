// Shared helpers for Floo's browser tests: launch Debian's Chromium headless, sign in
// with the dev login, and save screenshots as test artifacts.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export function args() {
  const [base, artifacts] = process.argv.slice(2);
  if (!base || !artifacts) {
    console.error('usage: node <test>.mjs BASE_URL ARTIFACT_DIR');
    process.exit(2);
  }
  mkdirSync(artifacts, { recursive: true });
  return { base, artifacts };
}

/**
 * Debian's Chromium, headless, with fake camera and microphone. `fps` lowers the fake
 * camera's frame rate (30 by default) where many pages share this machine's two cores.
 * `devices` offers that many fake cameras (and Chromium's three fake microphones); `args`
 * are more command-line switches (such as files for the fake devices to play).
 */
export async function launch({ fps, devices, args: extra = [] } = {}) {
  const executablePath = process.env.FLOO_CHROMIUM || '/usr/bin/chromium';
  return chromium.launch({
    executablePath,
    headless: true, // playwright gives each launch a fresh, temporary profile
    args: [
      '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      fps ? `--use-fake-device-for-media-stream=fps=${fps}` : devices ? `--use-fake-device-for-media-stream=device-count=${devices}` : '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      // Screen sharing: pick the (virtual) screen without asking.
      '--auto-select-desktop-capture-source=Entire screen',
      ...extra,
    ],
  });
}

/**
 * A new browser context (its own cookies) signed in with the dev login as `name`;
 * `options` are more options for that context (a phone's viewport, touch).
 */
export async function signIn(browser, base, name, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  const page = await context.newPage();
  page.on('pageerror', (e) => { throw new Error(`page error for ${name}: ${e.message}`); });
  await page.goto(`${base}/login`);
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Sign in (dev)' }).click();
  await page.getByRole('heading', { name: `Hello, ${name}` }).waitFor();
  return page;
}

/**
 * Asks the Rust test that runs this script to act (`run_browser_script_steering`): prints
 * `floo-ctl: REQUEST` and returns the one line the test answers on stdin.
 */
export async function ask(request) {
  const lines = createInterface({ input: process.stdin });
  const answered = new Promise((resolve, reject) => {
    lines.once('line', resolve);
    lines.once('close', () => reject(new Error(`the test did not answer "${request}"`)));
  });
  process.stdout.write(`floo-ctl: ${request}\n`);
  try {
    return await answered;
  } finally {
    lines.removeAllListeners('close');
    lines.close();
    process.stdin.pause();
  }
}

export async function shot(page, artifacts, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Runs `body(browser)`; on failure saves a screenshot of every open page, then rethrows. */
export async function withBrowser(artifacts, body, options) {
  const browser = await launch(options);
  try {
    await body(browser);
  } catch (e) {
    let i = 0;
    for (const context of browser.contexts()) {
      for (const page of context.pages()) {
        i += 1;
        await page.screenshot({ path: join(artifacts, `FAILED-page-${i}.png`), fullPage: true }).catch(() => {});
        console.error(`page ${i} was at ${page.url()}`);
      }
    }
    throw e;
  } finally {
    await browser.close();
  }
}

/**
 * `page` (signed in) creates a team; returns its URL and the path of its invite link
 * (a path, so that it can be opened at another of Floo's addresses).
 */
export async function createTeam(page, teamName) {
  await page.getByLabel('Team name').fill(teamName);
  await page.getByRole('button', { name: 'Create team' }).click();
  await page.getByRole('heading', { name: teamName }).waitFor();
  const teamUrl = page.url();
  await page.getByRole('link', { name: 'Invite', exact: true }).click();
  const invite = new URL(await page.locator('#invite-link').inputValue()).pathname;
  await page.goto(teamUrl);
  return { teamUrl, invite };
}

/** `page`, on its team's page, starts a meeting; returns the meeting's path. */
export async function startMeeting(page, title) {
  await page.getByLabel('Title').fill(title);
  await page.getByRole('button', { name: 'Start meeting' }).click();
  await page.locator('#call').waitFor();
  return new URL(page.url()).pathname;
}

/** `page`, on a meeting's page, waits for its camera preview and joins the call. */
export async function joinCall(page) {
  await page.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
  await page.getByRole('button', { name: 'Join call' }).click();
}

/** `page` (signed in at `at`) joins a team by its invite path. */
export async function joinTeam(page, at, invite, teamName) {
  await page.goto(at + invite);
  await page.getByRole('button', { name: `Join ${teamName}` }).click();
  // The invite page's own heading ("Join <team>?") holds the name too: wait for the team's page.
  await page.waitForURL((url) => url.pathname.startsWith('/teams/'));
  await page.getByRole('heading', { name: teamName }).waitFor();
}

/**
 * A team made in the browser: `owner` creates it, each of `members` signs in in a context
 * of their own and joins through the invite link. Returns the pages and the team's URL.
 */
export async function teamWith(browser, base, teamName, owner, members) {
  const ownerPage = await signIn(browser, base, owner);
  const { teamUrl, invite } = await createTeam(ownerPage, teamName);
  const memberPages = [];
  for (const name of members) {
    const page = await signIn(browser, base, name);
    await joinTeam(page, base, invite, teamName);
    memberPages.push(page);
  }
  await ownerPage.goto(teamUrl);
  return { owner: ownerPage, members: memberPages, teamUrl };
}
