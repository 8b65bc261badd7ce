// A meeting of a hundred: 96 synthetic participants (tests/it/synthetic.rs replays real
// WebCodecs output: 30 with cameras on, one speaking, the rest muted with cameras off) and
// four browsers: Ana, Ben and Cleo in Chromium, Dara in Firefox. Then:
// 1. Everyone joins quietly (a large meeting): muted, camera off, and told so.
// 2. Ana's grid shows a page of 25 tiles (of 99 people) and pictures in them, page 1 of 4;
//    the next page shows others.
// 3. The speaker (a synthetic participant) is on the first page and heard; in the speaker
//    view he is the main tile.
// 4. No browser ever has more video decoders than tiles on screen, and decodes only the
//    few voices the relay forwards.
import { args, launch, signIn, joinCall, shot, check } from './lib.mjs';
import { launchFirefox, firefoxSignIn, firefoxShot, checkFirefoxErrors } from './firefox.mjs';

const { base, artifacts } = args();
const meeting = process.env.FLOO_MEETING;
const invite = process.env.FLOO_INVITE;
const team = process.env.FLOO_TEAM;
const speakerName = process.env.FLOO_SPEAKER;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** How many video and audio decoders a page has, and tiles on screen; the worst seen. */
const watchDecoders = (pages) => {
  const worst = new Map();
  const timer = setInterval(async () => {
    for (const [name, page] of pages) {
      const d = await page.evaluate(() => window.__floo?.decoders?.()).catch(() => null);
      if (!d) continue;
      const w = worst.get(name) || { over: -Infinity, audio: 0 };
      worst.set(name, { over: Math.max(w.over, d.video - d.tiles), audio: Math.max(w.audio, d.audio) });
    }
  }, 250);
  return { stop: () => clearInterval(timer), worst };
};

/** Waits in a Chromium (Playwright) or Firefox (puppeteer) page alike. */
const waitIn = (page, fn, arg, timeout = 20000) => (page.puppeteer
  ? page.waitForFunction(fn, { timeout }, arg)
  : page.waitForFunction(fn, arg, { timeout }));

const join = async (page, name) => {
  await page.goto(base + invite);
  if (page.puppeteer) {
    await Promise.all([page.waitForNavigation(), page.click('form button.primary')]);
    await page.goto(base + meeting);
    await waitIn(page, () => document.getElementById('preview').videoWidth > 0, null, 15000);
    await page.click('#join-call');
  } else {
    await page.getByRole('button', { name: `Join ${team}` }).click();
    await page.waitForURL((url) => url.pathname.startsWith('/teams/'));
    await page.goto(base + meeting);
    await joinCall(page);
  }
  await waitIn(page, () => (window.__floo?.call.participants.size || 0) >= 96, null, 30000);
  console.log(`${name} is in, with ${await page.evaluate(() => window.__floo.call.participants.size)} others`);
};

const chromium = await launch({ fps: 10 });
const firefox = await launchFirefox();
try {
  const pages = [];
  for (const name of ['Ana', 'Ben', 'Cleo']) pages.push([name, await signIn(chromium, base, name)]);
  const dara = await firefoxSignIn(firefox, base, 'Dara');
  dara.puppeteer = true;
  for (const [name, page] of pages) await join(page, name);
  await join(dara, 'Dara');
  const all = [...pages, ['Dara', dara]];
  const watch = watchDecoders(all);
  const [ana, ben] = [pages[0][1], pages[1][1]];

  // 1. Quiet join.
  for (const [name, page] of all) {
    const joined = await page.evaluate(() => ({ state: window.__floo.call.state, said: window.__floo.stats.said || [] }));
    check(joined.state.muted && joined.state.camera_off, `${name} joined muted with the camera off: ${JSON.stringify(joined.state)}`);
    check(joined.said.some((s) => /meeting is large/.test(s)), `${name} is told why: ${JSON.stringify(joined.said)}`);
  }

  // 2. Pages of 25.
  await ana.waitForFunction(() => document.querySelectorAll('#grid .tile:not(.self):not(.screen)').length === 25, null, { timeout: 15000 });
  check((await ana.locator('#page-label').textContent()) === 'Page 1 of 4', 'Ana is on page 1 of 4');
  await ana.waitForFunction(() => Object.values(window.__floo.stats.decoded).filter((n) => n > 20).length >= 10, null, { timeout: 30000 });
  const firstPage = await ana.evaluate(() => [...document.querySelectorAll('#grid .tile:not(.self)')].map((t) => t.dataset.participant));
  await shot(ana, artifacts, '01-page-one');
  await ana.getByRole('button', { name: 'Next page ›' }).click();
  await ana.waitForFunction(() => document.getElementById('page-label').textContent === 'Page 2 of 4');
  await ana.waitForFunction((before) => {
    const now = [...document.querySelectorAll('#grid .tile:not(.self)')].map((t) => t.dataset.participant);
    return now.length === 25 && now.every((id) => !before.includes(id));
  }, firstPage, { timeout: 10000 });
  await pause(1500);
  await shot(ana, artifacts, '02-page-two');
  await ana.getByRole('button', { name: '‹ Previous page' }).click();

  // 3. The speaker: on the first page, heard, and the main tile of the speaker view.
  const speaker = await ana.evaluate((n) => [...window.__floo.call.participants.values()].find((p) => p.name === n)?.id, speakerName);
  check(speaker !== undefined, `${speakerName} is in the call`);
  await ana.waitForFunction((id) => {
    const tiles = [...document.querySelectorAll('#grid .tile:not(.self)')].map((t) => Number(t.dataset.participant));
    return tiles.includes(id) && document.querySelector(`#grid .tile[data-participant="${id}"]`)?.classList.contains('speaking');
  }, speaker, { timeout: 15000 });
  for (const [name, page] of all) {
    await waitIn(page, (id) => (window.__floo.stats.audio[id] || 0) > 50, speaker, 20000)
      .catch(async () => { throw new Error(`${name} does not hear ${speakerName}: ${JSON.stringify(await page.evaluate(() => window.__floo.stats.audio))}`); });
  }
  await ben.getByRole('button', { name: 'Speaker view' }).click();
  // The large layer was paused while nobody watched it: it comes back with a keyframe.
  await ben.waitForFunction((id) => Number(document.querySelector('#grid .tile.main')?.dataset.participant) === id
    && window.__floo.stats.sizes[id]?.[0] === 640, speaker, { timeout: 15000 })
    .catch(async () => { throw new Error(`Ben's main tile gets the speaker's large layer: ${JSON.stringify(await ben.evaluate((id) => window.__floo.stats.sizes[id], speaker))}`); });
  await shot(ben, artifacts, '03-speaker-view');
  await firefoxShot(dara, artifacts, '04-firefox');

  // 4. Decoders.
  await pause(3000);
  watch.stop();
  checkFirefoxErrors([dara]);
  for (const [name, worst] of watch.worst) {
    console.log(`${name}: at most ${worst.over} video decoders more than tiles, ${worst.audio} voice decoders`);
    check(worst.over <= 0, `${name} never has more video decoders than tiles on screen (${worst.over} more)`);
    check(worst.audio <= 3, `${name} decodes only the forwarded voices (${worst.audio})`);
  }
} finally {
  await chromium.close();
  await firefox.close();
}
