// The container image's Floo, used as a person would: Alice and Bob sign in to the Floo
// running inside the image (tests/it/ops.rs starts it with buildah), meet in a call with
// Chromium's fake cameras and microphones, Alice records a few seconds, and the meeting
// video is composed and offered for download. The Rust side checks the file on the
// image's data volume with ffprobe.
import { args, withBrowser, teamWith, startMeeting, joinCall, shot, check } from './lib.mjs';

const { base, artifacts } = args();
await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members: [bob] } = await teamWith(browser, base, 'Shipped', 'Alice', ['Bob']);
  const meeting = await startMeeting(alice, 'In a box');
  await bob.goto(base + meeting);
  for (const page of [alice, bob]) await joinCall(page);
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => {
      const f = window.__floo;
      return f.call.participants.size === 1 && Object.values(f.stats.decoded).some((n) => n > 5)
        && Object.values(f.stats.audio).some((n) => n > 5);
    }, null, { timeout: 20000 });
  }
  await alice.getByRole('button', { name: '● Start recording' }).click();
  await bob.locator('#recording-indicator').waitFor({ state: 'visible', timeout: 10000 });
  await alice.waitForTimeout(4000);
  await alice.getByRole('button', { name: '■ Stop recording' }).click();
  await alice.locator('#recordings .badge', { hasText: 'ready' }).waitFor({ timeout: 90000 });
  const files = await alice.locator('#recordings .files a[download]').allTextContents();
  check(files.includes('Meeting video (MP4)'), `the meeting video is offered (saw ${files})`);
  const href = await alice.locator('#recordings a', { hasText: 'Meeting video (MP4)' }).getAttribute('href');
  const video = await bob.request.get(base + href);
  check(video.status() === 200 && video.headers()['content-type'] === 'video/mp4', `Bob downloads it: ${video.status()}`);
  await shot(alice, artifacts, 'recorded-in-the-image');
});
console.log('image walk: ok');
