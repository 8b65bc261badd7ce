// Running a meeting: Alice hosts (she started it); Bob, Carol and Dave are in the call,
// Erin comes later. From the list of people, Alice asks Bob to mute (Bob's client mutes
// and says who asked), lowers Carol's hand, and removes Dave (he is told why and cannot
// come back); then she makes the meeting "ask to join": Erin waits in the lobby, Alice
// is told and lets her in.
import { args, withBrowser, teamWith, startMeeting, joinCall, shot, check } from './lib.mjs';

const { base, artifacts } = args();

const said = (page) => page.evaluate(() => window.__floo.stats.said || []);
const untilSaid = async (page, pattern, what) => {
  await page.waitForFunction((source) => (window.__floo.stats.said || []).some((s) => new RegExp(source).test(s)), pattern.source, { timeout: 15000 })
    .catch(async () => { throw new Error(`${what}: was told ${JSON.stringify(await said(page))}`); });
};
const row = (page, name) => page.locator('#people-list li', { hasText: name });

await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members } = await teamWith(browser, base, 'Hosts', 'Alice', ['Bob', 'Carol', 'Dave', 'Erin']);
  const [bob, carol, dave, erin] = members;
  const meeting = await startMeeting(alice, 'All hands');
  for (const page of [alice, bob, carol, dave]) {
    if (page !== alice) await page.goto(base + meeting);
    await page.locator('#join-camera-off').check();
    await joinCall(page);
  }
  await alice.waitForFunction(() => window.__floo.call.participants.size === 3, null, { timeout: 20000 });
  check(await alice.evaluate(() => window.__floo.call.host), 'Alice hosts the meeting she started');
  check(!(await bob.evaluate(() => window.__floo.call.host)), 'Bob does not');
  check(await bob.locator('#people .host-tools').isHidden(), "Bob is offered no host's tools");

  // Ask Bob to mute.
  await alice.locator('#people summary').click();
  await row(alice, 'Bob').getByRole('button', { name: 'Ask to mute' }).click();
  await bob.waitForFunction(() => window.__floo.call.state.muted, null, { timeout: 10000 });
  await untilSaid(bob, /Alice asked you to mute/, 'Bob is told who asked');
  check((await bob.locator('#mute').textContent()) === 'Unmute', "Bob's button says he is muted");
  await alice.locator('#people-list li.hand').count(); // (none yet)

  // Carol raises her hand, then Dave: Alice's list has them first, in that order.
  await carol.getByRole('button', { name: 'Raise hand' }).click();
  await dave.getByRole('button', { name: 'Raise hand' }).click();
  await alice.waitForFunction(() => [...document.querySelectorAll('#people-list li.hand .person-name')].map((n) => n.textContent).join() === 'Carol,Dave', null, { timeout: 10000 });
  check((await alice.locator('#people-list li .person-name').first().textContent()) === 'Carol', 'raised hands first, in the order raised');
  await shot(alice, artifacts, '01-people-with-hands');
  await row(alice, 'Carol').getByRole('button', { name: 'Lower hand' }).click();
  await carol.waitForFunction(() => !window.__floo.call.state.hand, null, { timeout: 10000 });
  await untilSaid(carol, /Alice lowered your hand/, 'Carol is told who lowered her hand');
  check((await carol.locator('#hand').textContent()) === 'Raise hand', "Carol's button is back to Raise hand");

  // Remove Dave.
  alice.once('dialog', (dialog) => dialog.accept());
  await row(alice, 'Dave').getByRole('button', { name: 'Remove' }).click();
  await untilSaid(dave, /Alice removed you from this meeting/, 'Dave is told he was removed, and by whom')
    .catch(async (e) => { throw new Error(`${e.message}; closes ${JSON.stringify(await dave.evaluate(() => window.__floo.stats.closes))}`); });
  await dave.locator('#lobby').waitFor({ state: 'visible' });
  check(await dave.locator('#join-call').isDisabled(), 'Dave cannot join again from the page');
  await alice.waitForFunction(() => window.__floo.call.participants.size === 2, null, { timeout: 10000 });
  await dave.reload();
  await dave.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
  await dave.getByRole('button', { name: 'Join call' }).click();
  await dave.waitForFunction(() => /removed you from this meeting/.test(document.getElementById('call-status').textContent), null, { timeout: 10000 });
  await shot(dave, artifacts, '02-dave-removed');
  await alice.locator('.access-notes', { hasText: 'Dave' }).waitFor({ timeout: 10000 });

  // Ask to join: Erin waits until Alice lets her in.
  await alice.locator('#ask-to-join').check();
  await bob.waitForFunction(() => window.__floo.call.people.settings.ask_to_join, null, { timeout: 10000 });
  await erin.goto(base + meeting);
  await erin.locator('#join-camera-off').check();
  await joinCall(erin);
  await untilSaid(erin, /a host has been told you are here/, 'Erin is told to wait');
  check(await erin.evaluate(() => window.__floo.call.participants.size === 0), 'Erin sees nobody while waiting');
  await untilSaid(alice, /Erin is waiting to join/, 'Alice is told Erin is waiting');
  await alice.locator('#lobby-list li', { hasText: 'Erin' }).waitFor();
  await shot(alice, artifacts, '03-lobby');
  await alice.locator('#lobby-list li', { hasText: 'Erin' }).getByRole('button', { name: 'Let in' }).click();
  await erin.waitForFunction(() => window.__floo.call.participants.size === 3, null, { timeout: 10000 });
  await alice.waitForFunction(() => [...window.__floo.call.participants.values()].some((p) => p.name === 'Erin'), null, { timeout: 10000 });
  await shot(erin, artifacts, '04-erin-in');
});
