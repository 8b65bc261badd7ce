// Scheduling a meeting as a team would: Alice plans tomorrow's meeting (her browser's
// time zone filled in for her), Bob sees it upcoming on the team page and can add it to
// his calendar; Alice starts it early, it leaves Bob's upcoming list live, and both
// join its call.
import { args, check, joinTeam, shot, signIn, withBrowser, createTeam, joinCall } from './lib.mjs';

const { base, artifacts } = args();

await withBrowser(artifacts, async (browser) => {
  const alice = await signIn(browser, base, 'Alice');
  const { invite } = await createTeam(alice, 'Calendar club');
  const bob = await signIn(browser, base, 'Bob');
  await joinTeam(bob, base, invite, 'Calendar club');
  await bob.locator('#upcoming-list', { hasText: 'Nothing scheduled.' }).waitFor();

  await alice.getByRole('link', { name: 'Schedule a meeting' }).click();
  // The browser's own time zone is filled in for her.
  await alice.waitForFunction(() => document.getElementById('time-zone')?.value.length > 0, null, { timeout: 5000 });
  const zone = await alice.locator('#time-zone').inputValue();
  const tomorrow = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
  await alice.getByLabel('Title').fill('Tuesday planning');
  await alice.getByLabel('Date').fill(tomorrow);
  await alice.getByLabel('Time', { exact: true }).fill('09:30');
  await alice.getByLabel('Minutes').fill('45');
  await alice.getByLabel(/Description/).fill('**Agenda**: the roadmap.');
  await shot(alice, artifacts, '01-schedule-form');
  await alice.getByRole('button', { name: 'Schedule a meeting' }).click();
  await alice.getByRole('heading', { name: 'Tuesday planning' }).waitFor();
  const when = await alice.locator('#scheduled').textContent();
  check(when.includes('09:30') && when.includes(zone) && when.includes('45 minutes'), `the plan as written: ${when}`);
  check(await alice.locator('#scheduled strong', { hasText: 'Agenda' }).count() === 1, 'the description as Markdown');
  await shot(alice, artifacts, '02-scheduled');

  // Bob's open team page lists it, live; its .ics is a calendar file.
  await bob.locator('#upcoming-list', { hasText: 'Tuesday planning' }).waitFor();
  await shot(bob, artifacts, '03-upcoming');
  const ics = await bob.evaluate(async () => {
    const link = [...document.querySelectorAll('#upcoming-list a')].find((a) => a.textContent.includes('Tuesday planning'));
    const page = await (await fetch(link.href)).text();
    const href = new DOMParser().parseFromString(page, 'text/html').querySelector('a[download]').getAttribute('href');
    const response = await fetch(href);
    return { type: response.headers.get('content-type'), body: await response.text() };
  });
  check(ics.type.startsWith('text/calendar') && ics.body.includes('SUMMARY:Tuesday planning'), `the .ics: ${ics.type}`);
  const feed = await bob.locator('#calendar-url').inputValue();
  check(/\/calendar\/[0-9a-f]{64}\/team\.ics$/.test(feed), `the team's feed address: ${feed}`);

  // Alice starts it early: the usual meeting page; Bob's upcoming list empties live.
  await alice.getByRole('button', { name: 'Start the meeting' }).click();
  await alice.locator('#call').waitFor();
  await bob.locator('#upcoming-list', { hasText: 'Nothing scheduled.' }).waitFor();
  await bob.locator('li.meeting.live', { hasText: 'Tuesday planning' }).waitFor();
  await joinCall(alice);
  await bob.getByRole('link', { name: 'Tuesday planning' }).click();
  await bob.locator('#call').waitFor();
  await joinCall(bob);
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => window.__floo.stats.joinedAt > 0, null, { timeout: 15000 });
  }
  await shot(bob, artifacts, '04-in-the-call');
  console.log(`schedule walk: ok; zone ${zone}; feed ${feed}`);
});
