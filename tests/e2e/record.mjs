// Recording in real browsers: Alice (host) and Bob are in a call with fake cameras and
// microphones; Alice records about five seconds; both see the indicator while it runs;
// afterwards the meeting page lists a file per participant. The Rust side then checks the
// files with ffprobe.
import { args, withBrowser, teamWith, shot, check } from './lib.mjs';

const { base, artifacts } = args();
await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members: [bob] } = await teamWith(browser, base, 'Studio', 'Alice', ['Bob']);
  await alice.getByLabel('Title').fill('Podcast');
  await alice.getByRole('button', { name: 'Start meeting' }).click();
  await alice.locator('#call').waitFor();
  const meetingUrl = alice.url();
  await bob.goto(meetingUrl);
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
    await page.getByRole('button', { name: 'Join call' }).click();
  }
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => {
      const f = window.__floo;
      return f.call.participants.size === 1 && Object.values(f.stats.decoded).some((n) => n > 5);
    }, null, { timeout: 20000 });
  }

  await alice.getByRole('button', { name: '● Start recording' }).click();
  for (const page of [alice, bob]) await page.locator('#recording-indicator').waitFor({ state: 'visible', timeout: 10000 });
  await bob.locator('#comments .comment', { hasText: 'Alice started recording this meeting.' }).waitFor();
  await shot(bob, artifacts, '01-recording');
  await alice.waitForTimeout(5000); // the length of the recording under test
  await alice.getByRole('button', { name: '■ Stop recording' }).click();
  await alice.locator('#recordings .badge', { hasText: 'ready' }).waitFor({ timeout: 20000 });
  await bob.locator('#recording-indicator').waitFor({ state: 'hidden', timeout: 10000 });
  check(alice.url() === meetingUrl, 'recording did not navigate away from the call');
  check(await alice.locator('#in-call').isVisible(), 'Alice is still in the call');
  const files = await alice.locator('#recordings a[download]').count();
  check(files === 2, `a file per participant (saw ${files})`);
  await shot(alice, artifacts, '02-recorded');
  console.log('recording browser walk: ok');
});
