// A video meeting in real browsers with Chromium's fake camera and microphone: three
// people see each other, a mute shows for the others, a late joiner sees video within a
// second, a leaver disappears from the roster, and a killed transport reconnects.
import { args, withBrowser, teamWith, shot, check } from './lib.mjs';

const { base, artifacts } = args();

/** Decoded-frame counts per remote participant, as the page's client reports them. */
const decodedFromAll = (page, min) =>
  page.waitForFunction((min) => {
    const f = window.__floo;
    if (!f || !f.call.participants.size) return false;
    return [...f.call.participants.keys()].every((id) => (f.stats.decoded[id] || 0) >= min);
  }, min, { timeout: 20000 });

await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members: [bob, carol, dave] } = await teamWith(browser, base, 'Video team', 'Alice', ['Bob', 'Carol', 'Dave']);
  await alice.getByLabel('Title').fill('Weekly sync');
  await alice.getByRole('button', { name: 'Start meeting' }).click();
  await alice.locator('#call').waitFor();
  const meetingUrl = alice.url();

  // A browser without WebCodecs is told what it lacks and which browsers work, and
  // cannot press "Join call" into a call that would never start.
  const old = await browser.newContext({ storageState: await alice.context().storageState() });
  await old.addInitScript(() => { delete window.VideoEncoder; delete window.AudioEncoder; });
  const oldPage = await old.newPage();
  await oldPage.goto(meetingUrl);
  const support = oldPage.locator('#call-support');
  await support.waitFor({ state: 'visible', timeout: 10000 });
  const said = await support.textContent();
  check(said.includes('WebCodecs (VideoEncoder, AudioEncoder)') && said.includes('Firefox 140 or later'), `the lobby names what is missing: ${said}`);
  check(await oldPage.getByRole('button', { name: 'Join call' }).isDisabled(), 'joining is not offered');
  await shot(oldPage, artifacts, '00-no-webcodecs');
  await old.close();

  // The lobby shows the camera preview and the microphone level.
  await alice.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
  await alice.waitForFunction(() => document.getElementById('camera-select').options.length > 0);
  await shot(alice, artifacts, '01-lobby');

  const join = async (page) => {
    if (page.url() !== meetingUrl) await page.goto(meetingUrl);
    await page.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
    await page.getByRole('button', { name: 'Join call' }).click();
    await page.waitForFunction(() => window.__floo.stats.joinedAt > 0, null, { timeout: 15000 });
  };
  for (const page of [alice, bob, carol]) await join(page);

  // Each decodes frames from both others, at the size sent.
  for (const page of [alice, bob, carol]) await decodedFromAll(page, 10);
  const sizes = await alice.evaluate(() => Object.values(window.__floo.stats.sizes));
  check(sizes.length === 2 && sizes.every(([w, h]) => w >= 320 && h >= 180), `decoded sizes ${JSON.stringify(sizes)}`);
  await shot(alice, artifacts, '02-three-in-call');

  // Bob mutes: the others see it.
  await bob.getByRole('button', { name: 'Mute' }).click();
  for (const page of [alice, carol]) await page.locator('#grid .tile.muted', { hasText: 'Bob' }).waitFor({ timeout: 10000 });

  // Dave joins late: video from everyone within a second of joining.
  await join(dave);
  await decodedFromAll(dave, 1);
  const lag = await dave.evaluate(() => {
    const s = window.__floo.stats;
    return Math.max(...Object.values(s.firstFrameAt).map((t) => t - s.joinedAt));
  });
  check(lag < 1000, `late joiner rendered everyone's video after ${Math.round(lag)} ms`);
  check(await dave.locator('#grid .tile.muted', { hasText: 'Bob' }).count() === 1, 'a late joiner sees the mute too');
  await shot(dave, artifacts, '03-late-joiner');

  // Bob shares his screen: the others get it as a large tile of its own, then it goes.
  await bob.getByRole('button', { name: 'Share screen' }).click();
  for (const page of [alice, dave]) {
    await page.waitForFunction(() => {
      const canvas = document.querySelector('#grid .tile.screen canvas');
      return canvas && canvas.width >= 640;
    }, null, { timeout: 15000 });
  }
  check(await alice.locator('#grid .tile.screen', { hasText: 'Bob is sharing their screen' }).count() === 1, 'the screen tile is named');
  await shot(alice, artifacts, '03b-screen-share');
  await bob.getByRole('button', { name: 'Stop sharing' }).click();
  await alice.locator('#grid .tile.screen').waitFor({ state: 'detached', timeout: 10000 });

  // Carol leaves: the roster updates for the others.
  await carol.getByRole('button', { name: 'Leave call' }).click();
  await alice.waitForFunction(() => !document.getElementById('roster').textContent.includes('Carol'), null, { timeout: 10000 });
  check(await alice.locator('#grid .tile:not(.self)').count() === 2, 'two remote tiles after Carol left');

  // Alice's transport dies: her client reconnects by itself and video flows again.
  const before = await alice.evaluate(() => window.__floo.stats.reconnects);
  await alice.evaluate(() => window.__floo.killTransport());
  await alice.waitForFunction((n) => window.__floo.stats.reconnects > n, before, { timeout: 15000 });
  await alice.evaluate(() => { window.__floo.stats.decoded = {}; });
  await decodedFromAll(alice, 5);
  await decodedFromAll(bob, 5);
  await shot(alice, artifacts, '04-after-reconnect');
  console.log(`video call browser walk: ok (late joiner lag ${Math.round(lag)} ms)`);
});
