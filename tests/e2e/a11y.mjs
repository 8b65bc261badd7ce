// Accessibility of every kind of page, checked by axe-core (WCAG 2.1 A and AA rules) in
// Chromium: signed out (landing, login), the home page, a team's meetings, forum, topic,
// members, invite, settings, search and schedule pages (also at a phone's size), a
// meeting's lobby and the call itself with someone in it. Then the call from the keyboard:
// the shortcuts, Tab through the controls with a visible focus, and what screen readers
// are told (the live regions).
import { args, withBrowser, signIn, createTeam, joinTeam, startMeeting, joinCall, shot, check } from './lib.mjs';
import { violations } from './axe.mjs';

const { base, artifacts } = args();
await withBrowser(artifacts, async (browser) => {
  const found = [];
  const audit = async (page, name) => {
    const list = await violations(page);
    for (const v of list) found.push({ page: name, ...v });
    console.log(`${name}: ${list.length ? list.map((v) => `${v.id} (${v.nodes.length})`).join(', ') : 'clean'}`);
  };
  const visitor = await (await browser.newContext()).newPage();
  await visitor.goto(base);
  await audit(visitor, 'landing');
  await visitor.goto(`${base}/login`);
  await audit(visitor, 'login');

  const alice = await signIn(browser, base, 'Alice');
  await audit(alice, 'home');
  const { teamUrl, invite } = await createTeam(alice, 'Access');
  await audit(alice, 'team');
  const bob = await signIn(browser, base, 'Bob');
  await joinTeam(bob, base, invite, 'Access');
  await alice.goto(`${teamUrl}/forum`);
  await audit(alice, 'forum');
  await alice.getByRole('link', { name: 'New topic' }).click();
  await alice.getByLabel('Title').fill('Plans');
  await alice.locator('#body').fill('The **plan** for next week.');
  await alice.getByRole('button', { name: 'Post topic' }).click();
  await alice.getByRole('heading', { name: 'Plans' }).waitFor();
  await audit(alice, 'topic');
  await alice.goto(`${teamUrl}/members`);
  await audit(alice, 'members');
  await alice.goto(`${teamUrl}/invite`);
  await audit(alice, 'invite');
  await alice.goto(`${teamUrl}/settings`);
  await audit(alice, 'settings');
  await alice.goto(`${teamUrl}/search?q=plan`);
  await audit(alice, 'search');
  await alice.goto(`${teamUrl}/schedule`);
  await audit(alice, 'schedule');
  // The same pages on a phone's screen.
  await alice.setViewportSize({ width: 390, height: 844 });
  for (const [path, name] of [['', 'team'], ['/forum', 'forum'], ['/members', 'members'], ['/schedule', 'schedule']]) {
    await alice.goto(`${teamUrl}${path}`);
    await audit(alice, `${name} (phone)`);
  }
  await alice.setViewportSize({ width: 1280, height: 860 });
  await alice.goto(teamUrl);
  const meeting = await startMeeting(alice, 'Review');
  await alice.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
  await audit(alice, 'lobby');
  await joinCall(alice);
  await bob.goto(base + meeting);
  await joinCall(bob);
  await alice.waitForFunction(() => window.__floo.call.participants.size === 1, null, { timeout: 20000 });
  await alice.waitForTimeout(1000);
  await audit(alice, 'call');
  await shot(alice, artifacts, 'call');

  // The call from the keyboard: the shortcuts work, are said to screen readers, and do
  // nothing while typing in the chat.
  const said = () => alice.evaluate(() => window.__floo.stats.announced || []);
  const muted = () => alice.evaluate(() => window.__floo.call.state.muted);
  await alice.locator('body').click({ position: { x: 5, y: 5 } });
  await alice.keyboard.press('m');
  check(await muted(), 'M mutes');
  check((await alice.locator('#mute').getAttribute('aria-pressed')) === 'true', 'the mute button says it is pressed');
  await alice.waitForFunction(() => document.getElementById('call-alert').textContent === 'You are muted');
  await alice.locator('#comment-body').fill('');
  await alice.locator('#comment-body').type('mvr');
  check(await muted(), 'typing m in the chat does not unmute');
  check(!(await alice.evaluate(() => window.__floo.call.state.camera_off)), 'typing v in the chat keeps the camera on');
  check((await alice.locator('#comment-body').inputValue()) === 'mvr', 'the chat got the letters');
  await alice.locator('#mute').focus();
  await alice.keyboard.press('r');
  check(await alice.evaluate(() => window.__floo.call.state.hand), 'R raises the hand');
  // Bob hears of it, and of Carol joining.
  await bob.waitForFunction(() => (window.__floo.stats.announced || []).includes('Alice raised their hand'), null, { timeout: 10000 });
  const carol = await signIn(browser, base, 'Carol');
  await joinTeam(carol, base, invite, 'Access');
  await carol.goto(base + meeting);
  await joinCall(carol);
  await alice.waitForFunction(() => (window.__floo.stats.announced || []).includes('Carol joined the call'), null, { timeout: 15000 })
    .catch(async () => { throw new Error(`Alice was told: ${JSON.stringify(await said())}`); });
  // Every control of the call is reachable with Tab, in order, with a visible focus.
  await alice.locator('#mute').focus();
  const order = [];
  for (let i = 0; i < 6; i++) {
    order.push(await alice.evaluate(() => document.activeElement.id));
    const outline = await alice.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    check(outline !== 'none', `${order.at(-1)} shows its focus`);
    await alice.keyboard.press('Tab');
  }
  check(order.join(' ') === 'mute camera screen hand view leave-call', `Tab goes through the controls in order: ${order.join(' ')}`);
  await alice.locator('#mute').focus();
  await alice.keyboard.press('Shift+L');
  await alice.locator('#lobby').waitFor({ state: 'visible', timeout: 10000 });
  await shot(alice, artifacts, 'left-by-keyboard');
  for (const f of found) console.log(`${f.page}: ${f.id} [${f.impact}] ${f.help}\n  ${f.nodes.join('\n  ')}`);
  check(found.length === 0, `${found.length} accessibility violations (above)`);
});
