// A call across browsers: Alice in Chromium, Bob and Carol in Firefox (Debian's ESR,
// driven over WebDriver BiDi), each with the browser's fake camera and microphone.
// Firefox has no MediaStreamTrackProcessor: it captures through a <video> and an
// AudioWorklet. Carol's browser remembers that the WebSocket won last time, so she joins
// over the fallback: a call that mixes browsers and transports. Everyone decodes
// everyone's video (the pixels are checked: Chromium's fake camera is green, Firefox's
// blue) and audio (loud enough not to be silence); Bob's mute reaches the others; Alice
// records the call and the Rust side checks that the Firefox participants' tracks are in
// it (ffprobe). Both browsers also check the shared wire test vectors.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { args, launch, signIn, shot, check } from './lib.mjs';
import { launchFirefox, firefoxSignIn, firefoxShot, checkFirefoxErrors } from './firefox.mjs';
import { checkWireVectors } from './wire-check.mjs';

const { base, artifacts } = args();
const vectors = JSON.parse(readFileSync(new URL('../wire-vectors.json', import.meta.url), 'utf8'));

/** `waitForFunction` for both drivers (Playwright and Puppeteer order the arguments differently). */
const waitIn = (page, fn, arg, timeout = 20000) => (page.puppeteer
  ? page.waitForFunction(fn, { timeout }, arg)
  : page.waitForFunction(fn, arg, { timeout }));

/** Frames of video and audio decoded from each remote participant, with their names. */
const received = (page) => page.evaluate(() => {
  const f = window.__floo;
  return [...f.call.participants.entries()].map(([id, p]) => ({
    name: p.name, transport: p.transport, video: f.stats.decodedFrames[id] || 0, audio: f.stats.audio[id] || 0, loudest: f.stats.loudest[id] || 0,
  }));
});

/** The average colour of a participant's tile, as drawn (every 97th pixel). */
const tileColour = (page, name) => page.evaluate((who) => {
  const tile = [...document.querySelectorAll('#grid .tile:not(.self):not(.screen)')]
    .find((t) => t.querySelector('.tile-label').textContent.startsWith(who));
  if (!tile) return null;
  const canvas = tile.querySelector('canvas');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let r = 0, g = 0, b = 0, n = 0;
  for (let i = 0; i < data.length; i += 4 * 97) { r += data[i]; g += data[i + 1]; b += data[i + 2]; n++; }
  return { r: r / n, g: g / n, b: b / n, width: canvas.width };
}, name);

/** The average colour of a page's own camera view (what it sends), as `tileColour` measures. */
const ownColour = (page) => page.evaluate(() => {
  const video = document.getElementById('self-video');
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(video, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let r = 0, g = 0, b = 0, n = 0;
  for (let i = 0; i < data.length; i += 4 * 97) { r += data[i]; g += data[i + 1]; b += data[i + 2]; n++; }
  return { r: r / n, g: g / n, b: b / n };
});
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const distance = (a, b) => Math.hypot(a.r - b.r, a.g - b.g, a.b - b.b);

const chrome = await launch();
const firefox = await launchFirefox();
const pages = [];
try {
  const alice = await signIn(chrome, base, 'Alice');
  pages.push(alice);
  // The wire codec passes the shared vectors in both browsers.
  const chromiumFailures = await alice.evaluate(checkWireVectors, vectors);
  check(chromiumFailures.length === 0, `wire vectors in Chromium: ${chromiumFailures.join('; ')}`);

  await alice.getByLabel('Team name').fill('Every browser');
  await alice.getByRole('button', { name: 'Create team' }).click();
  await alice.getByRole('heading', { name: 'Every browser' }).waitFor();
  const teamUrl = alice.url();
  await alice.getByRole('link', { name: 'Invite', exact: true }).click();
  const invite = await alice.locator('#invite-link').inputValue();
  const firefoxPages = [];
  for (const name of ['Bob', 'Carol']) {
    const page = await firefoxSignIn(firefox, base, name);
    page.puppeteer = true;
    await page.goto(invite);
    await Promise.all([page.waitForNavigation(), page.click('form button.primary')]);
    firefoxPages.push(page);
    pages.push(page);
  }
  const [bob, carol] = firefoxPages;
  const firefoxFailures = await bob.evaluate(checkWireVectors, vectors);
  check(firefoxFailures.length === 0, `wire vectors in Firefox: ${firefoxFailures.join('; ')}`);

  await alice.goto(teamUrl);
  await alice.getByLabel('Title').fill('Across browsers');
  await alice.getByRole('button', { name: 'Start meeting' }).click();
  await alice.locator('#call').waitFor();
  const meetingUrl = alice.url();
  for (const page of firefoxPages) await page.goto(meetingUrl);
  // Carol's browser joined over the WebSocket last time (a network that blocked UDP).
  await carol.evaluate(() => localStorage.setItem('floo.call-transport', JSON.stringify({ kind: 'websocket', at: Date.now() })));

  for (const page of pages) {
    await waitIn(page, () => document.getElementById('preview').videoWidth > 0, null, 15000);
    await page.click('#join-call');
    await waitIn(page, () => window.__floo.stats.joinedAt > 0, null, 15000);
  }
  const transports = await Promise.all(pages.map((p) => p.evaluate(() => [window.__floo.stats.transport, window.__floo.stats.capture])));
  check(JSON.stringify(transports) === JSON.stringify([['webtransport', 'processor'], ['webtransport', 'element'], ['websocket', 'element']]),
    `Alice over WebTransport reading frames with MediaStreamTrackProcessor, Bob over WebTransport and Carol over the WebSocket capturing through <video> and AudioWorklet: ${JSON.stringify(transports)}`);

  // Everyone decodes everyone else's video and audio.
  for (const page of pages) {
    await waitIn(page, () => {
      const f = window.__floo;
      return f.call.participants.size === 2 && [...f.call.participants.keys()]
        .every((id) => (f.stats.decodedFrames[id] || 0) >= 30 && (f.stats.audio[id] || 0) >= 50);
    }, null, 30000);
  }
  const report = {};
  for (const [who, page] of [['Alice', alice], ['Bob', bob], ['Carol', carol]]) {
    report[who] = await received(page);
    for (const from of report[who]) check(from.loudest > 0.01, `${who} hears ${from.name}: loudest ${from.loudest}`);
  }
  // The pictures are the senders' cameras: each tile has the colour the sender's own view
  // has at the same moment (Chromium's fake camera is green, Firefox's cycles through
  // colours), and is not a blank or black tile.
  const byName = { Alice: alice, Bob: bob, Carol: carol };
  for (const [who, page] of Object.entries(byName)) {
    // A page paints on animation frames, which a browser gives only to the tab in view.
    await page.bringToFront();
    await pause(500);
    for (const name of Object.keys(byName).filter((n) => n !== who)) {
      const [seen, sent] = await Promise.all([tileColour(page, name), ownColour(byName[name])]);
      check(seen && seen.width >= 320, `${who} draws ${name}'s tile (${JSON.stringify(seen)})`);
      const vivid = Math.max(seen.r, seen.g, seen.b) - Math.min(seen.r, seen.g, seen.b) > 60;
      check(vivid && distance(seen, sent) < 90,
        `${who} sees ${name}'s camera: tile ${JSON.stringify(seen)}, ${name}'s own view ${JSON.stringify(sent)}`);
    }
  }
  const roster = await alice.locator('#roster').textContent();
  check(roster.includes('Carol (WebSocket)') && !roster.includes('Bob (WebSocket)'), `the roster says who uses the fallback: ${roster}`);
  await shot(alice, artifacts, '01-chromium-sees-firefox');
  await firefoxShot(bob, artifacts, '02-firefox-sees-chromium');
  await firefoxShot(carol, artifacts, '03-firefox-over-websocket');

  // Bob (Firefox) mutes: Alice and Carol see it.
  await bob.click('#mute');
  await alice.locator('#grid .tile.muted', { hasText: 'Bob' }).waitFor({ timeout: 10000 });
  await waitIn(carol, () => [...document.querySelectorAll('#grid .tile.muted')].some((t) => t.textContent.includes('Bob')), null, 10000);

  // Firefox's headless build has no screen to capture: sharing says why instead of failing silently.
  await bob.click('#screen');
  await waitIn(bob, () => document.getElementById('call-status').textContent.includes('Screen sharing did not start'), null, 10000);
  const shareStatus = await bob.evaluate(() => document.getElementById('call-status').textContent);

  // Alice records a few seconds; the Firefox participants' tracks must be in it.
  await alice.getByRole('button', { name: '● Start recording' }).click();
  for (const page of pages) await waitIn(page, () => !document.getElementById('recording-indicator').hidden, null, 10000);
  const started = Date.now();
  await alice.waitForTimeout(4000);
  await alice.getByRole('button', { name: '■ Stop recording' }).click();
  const recorded = Date.now() - started;
  await alice.locator('#recordings .badge', { hasText: 'ready' }).waitFor({ timeout: 90000 });
  const files = await alice.locator('#recordings .files a[download]').allTextContents();
  for (const name of ['Alice', 'Bob', 'Carol']) check(files.includes(`${name}'s tracks (WebM)`), `${name}'s tracks are offered (saw ${files})`);
  const ids = {};
  for (const [name, page] of [['Alice', alice], ['Bob', bob], ['Carol', carol]]) ids[name] = await page.evaluate(() => window.__floo.call.you.userId);
  writeFileSync(join(artifacts, 'recording.json'), JSON.stringify({ recorded, ids }));
  await shot(alice, artifacts, '04-recorded');
  for (const page of pages) {
    const closes = await page.evaluate(() => window.__floo.stats.closes);
    check(closes.length === 0, `no connection dropped (${JSON.stringify(closes)})`);
  }
  checkFirefoxErrors(firefoxPages);
  console.log(`browsers walk: ok; decoded ${JSON.stringify(report)}; Firefox screen share: ${shareStatus}`);
} catch (e) {
  let i = 0;
  for (const page of pages) {
    i += 1;
    await Promise.race([page.screenshot({ path: join(artifacts, `FAILED-page-${i}.png`), fullPage: true }), pause(5000)]).catch(() => {});
    const said = await Promise.race([page.evaluate(() => JSON.stringify(window.__floo?.stats)), pause(5000).then(() => 'no answer')]);
    console.error(`page ${i}: ${said}`);
  }
  throw e;
} finally {
  await chrome.close();
  await firefox.close();
}
