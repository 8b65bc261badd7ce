// Debian's Firefox ESR for the browser tests, driven by puppeteer-core over WebDriver
// BiDi (Playwright's Firefox needs its own patched build, which cannot be fetched here),
// with Firefox's fake camera and microphone.
import puppeteer from 'puppeteer-core';
import { join } from 'node:path';

export async function launchFirefox() {
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FLOO_FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      // Screen sharing without a picker.
      'media.getdisplaymedia.enabled': true,
      'media.navigator.video.default_fps': 30,
      // Stands for the click a person gives the page: audio may start.
      'media.autoplay.default': 0,
    },
    // Firefox plays and reads audio only through a sound server: the tests run a
    // PulseAudio with a null sink (ops/test starts it) and pass its address.
    env: { ...process.env, ...(process.env.FLOO_PULSE_SERVER ? { PULSE_SERVER: process.env.FLOO_PULSE_SERVER } : {}) },
  });
}

/** A new Firefox context (its own cookies) signed in with the dev login as `name`. */
export async function firefoxSignIn(browser, base, name) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 1280, height: 860 });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`${name}: ${e.message}`));
  await page.goto(`${base}/login`);
  await page.type('#name', name);
  await Promise.all([page.waitForNavigation(), page.click('form button.primary')]);
  await page.waitForFunction((n) => document.body.innerText.includes(`Hello, ${n}`), { timeout: 10000 }, name);
  return page;
}

/**
 * Fails if any of `pages` had a script error. (Chromium's pages fail the walk at their
 * first error, in lib.mjs; puppeteer's events cannot throw into the walk, so Firefox's are
 * collected and checked here, by every walk that uses Firefox, before it ends.)
 */
export function checkFirefoxErrors(pages) {
  const errors = pages.flatMap((page) => page.errors);
  if (errors.length) throw new Error(`script errors in Firefox: ${errors.join('; ')}`);
}

export async function firefoxShot(page, artifacts, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}
