// A call from a phone: Alice uses Chromium's mobile emulation (390×844 CSS pixels, touch,
// device scale factor 3); Bob and Carol are on desktops. Alice's team pages fit the
// screen; in the call of three she taps Mute, opens the chat panel and writes, raises her
// hand, looks at the people and the devices, turns the phone to landscape, and leaves.
// Nothing is ever wider than the screen, the controls are at least 44 px and within the
// screen, the panels open over the call, and axe-core finds nothing at this size.
import { join } from 'node:path';
import { args, withBrowser, signIn, createTeam, joinTeam, startMeeting, joinCall, check } from './lib.mjs';
import { violations } from './axe.mjs';

const { base, artifacts } = args();
// What the phone's screen shows (not the whole page: a full-page capture makes the viewport
// as tall as the page, which is no longer a phone).
const shot = (page, artifacts, name) => page.screenshot({ path: join(artifacts, `${name}.png`) });
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true };

/** What sticks out sideways on `page` (elements wider than the screen), if anything. */
const overflow = (page) => page.evaluate(() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter((el) => {
    if (!el.getClientRects().length) return false;
    const r = el.getBoundingClientRect();
    // Inside something that scrolls sideways on its own (a wide table) is fine.
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(up).overflowX)) return false;
    }
    return r.right > width + 1 || r.left < -1;
  }).slice(0, 5).map((el) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${[...el.classList].join('.')} (${Math.round(el.getBoundingClientRect().left)}–${Math.round(el.getBoundingClientRect().right)})`);
  return { scroll: document.documentElement.scrollWidth, width, wide };
});
const fits = async (page, where) => {
  const o = await overflow(page);
  check(o.scroll <= o.width && o.wide.length === 0, `${where}: nothing wider than the ${o.width} px screen (page ${o.scroll} px; ${o.wide.join(', ')})`);
};
const clean = async (page, where) => {
  const found = await violations(page);
  check(found.length === 0, `${where}: axe finds ${JSON.stringify(found, null, 1)}`);
};

await withBrowser(artifacts, async (browser) => {
  const alice = await signIn(browser, base, 'Alice', PHONE);
  await fits(alice, 'home');
  const { teamUrl, invite } = await createTeam(alice, 'Pocket team');
  await fits(alice, 'team page');
  await shot(alice, artifacts, '01-team');
  const tabs = await alice.locator('nav.tabs a').evaluateAll((links) =>
    links.map((a) => ({ text: a.textContent.trim(), right: a.getBoundingClientRect().right })));
  check(tabs.length > 0 && tabs.every((t) => t.right <= 391), `every team tab is on the screen: ${JSON.stringify(tabs)}`);
  await alice.goto(`${teamUrl}/forum`);
  await fits(alice, 'forum');
  const [bob, carol] = [await signIn(browser, base, 'Bob'), await signIn(browser, base, 'Carol')];
  for (const [page, name] of [[bob, 'Bob'], [carol, 'Carol']]) await joinTeam(page, base, invite, 'Pocket team');
  await alice.goto(teamUrl);
  const meeting = await startMeeting(alice, 'Stand-up');
  await alice.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
  await fits(alice, 'lobby');
  await shot(alice, artifacts, '02-lobby');
  await alice.getByRole('button', { name: 'Join call' }).tap();
  for (const page of [bob, carol]) {
    await page.goto(base + meeting);
    await joinCall(page);
  }
  await alice.waitForFunction(() => window.__floo.call.participants.size === 2
    && Object.values(window.__floo.stats.decoded).filter((n) => n > 3).length === 2, null, { timeout: 25000 });

  // The call fills the screen: tiles, then the controls at the bottom, all on screen.
  await fits(alice, 'call');
  const bar = await alice.locator('.call-controls button:visible').evaluateAll((buttons) => buttons.map((b) => {
    const r = b.getBoundingClientRect();
    return { id: b.id, w: r.width, h: r.height, top: r.top, bottom: r.bottom };
  }));
  const ids = bar.map((b) => b.id);
  for (const id of ['mute', 'camera', 'hand', 'chat-toggle', 'people-toggle', 'more-toggle', 'leave-call']) {
    check(ids.includes(id), `#${id} is in the control bar (${ids})`);
  }
  for (const b of bar) check(b.w >= 44 && b.h >= 44, `#${b.id} is at least 44 px (${Math.round(b.w)}×${Math.round(b.h)})`);
  check(bar.every((b) => b.bottom <= 844 && b.top >= 844 * 0.6), `the controls are at the bottom of the screen: ${JSON.stringify(bar.map((b) => [b.id, Math.round(b.top)]))}`);
  const tiles = await alice.locator('#grid .tile').evaluateAll((list) => list.map((t) => t.getBoundingClientRect()).map((r) => ({ left: r.left, right: r.right, bottom: r.bottom })));
  check(tiles.length === 3 && tiles.every((t) => t.left >= 0 && t.right <= 390), `three tiles across the screen: ${JSON.stringify(tiles)}`);
  await clean(alice, 'the call on a phone');
  await shot(alice, artifacts, '03-call');

  await alice.locator('#mute').tap();
  await alice.waitForFunction(() => window.__floo.call.state.muted);
  check((await alice.locator('#mute').getAttribute('aria-pressed')) === 'true', 'the mute button says it is pressed');

  // The chat as a panel over the call: write, and the others read it.
  await alice.locator('#chat-toggle').tap();
  await alice.locator('#chat').waitFor({ state: 'visible' });
  check((await alice.locator('#chat-toggle').getAttribute('aria-expanded')) === 'true', 'the chat button says the panel is open');
  const panel = await alice.locator('#chat').boundingBox();
  const barTop = Math.min(...bar.map((b) => b.top));
  check(panel.y >= 0 && panel.y + panel.height <= barTop + 1 && panel.width <= 390, `the chat panel is over the call, above the controls: ${JSON.stringify(panel)}`);
  await alice.locator('#comment-body').fill('Hello from my phone');
  await alice.locator('#comment-form').getByRole('button', { name: 'Send' }).tap();
  for (const page of [alice, bob, carol]) await page.locator('#comments .comment', { hasText: 'Hello from my phone' }).waitFor({ timeout: 10000 });
  await fits(alice, 'chat panel');
  await clean(alice, 'the chat panel');
  await shot(alice, artifacts, '04-chat');
  await alice.locator('#chat-toggle').tap();
  await alice.locator('#chat').waitFor({ state: 'hidden' });

  // Raise a hand; the others see it in their list of people.
  await alice.locator('#hand').tap();
  await bob.waitForFunction(() => [...window.__floo.call.participants.values()].some((p) => p.name === 'Alice' && p.state?.hand), null, { timeout: 10000 });
  await alice.locator('#people-toggle').tap();
  await alice.locator('#people-list li', { hasText: 'Bob' }).waitFor({ state: 'visible' });
  await fits(alice, 'people panel');
  await shot(alice, artifacts, '05-people');
  await alice.locator('#more-toggle').tap();
  check(await alice.locator('#people').isHidden(), 'one panel at a time');
  await alice.locator('#call-camera-select').waitFor({ state: 'visible' });
  await alice.locator('#call-stats summary').tap();
  await fits(alice, 'devices and statistics panel');
  await shot(alice, artifacts, '06-more');
  await alice.locator('#more-toggle').tap();

  // Landscape: still everything on screen.
  await alice.setViewportSize({ width: 844, height: 390 });
  await alice.waitForTimeout(300);
  await fits(alice, 'call in landscape');
  const wide = await alice.locator('.call-controls button:visible').evaluateAll((buttons) => buttons.map((b) => b.getBoundingClientRect()).map((r) => ({ bottom: r.bottom, h: r.height })));
  check(wide.every((b) => b.bottom <= 390 && b.h >= 44), `the controls fit in landscape: ${JSON.stringify(wide)}`);
  await shot(alice, artifacts, '07-landscape');
  await alice.setViewportSize({ width: 390, height: 844 });

  await alice.locator('#leave-call').tap();
  await alice.locator('#lobby').waitFor({ state: 'visible' });
  await bob.waitForFunction(() => window.__floo.call.participants.size === 1, null, { timeout: 10000 });
  await fits(alice, 'after leaving');
  await shot(alice, artifacts, '08-left');
});
console.log('phone walk: ok');
