// Recording in real browsers: Alice (host) and Bob are in a call with fake cameras and
// microphones; Alice records about five seconds, during which Bob shares his screen for
// a while and then turns his camera off; both see the indicator while it runs. Then the
// meeting page shows the composition's progress until the meeting video is ready; the
// video downloads whole and by range, plays in Chromium, and is refused to a non-member.
// The Rust side checks every file with ffprobe afterwards.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { args, withBrowser, teamWith, signIn, shot, check } from './lib.mjs';

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
  // About five seconds in all: both cameras, then Bob's screen, then Bob's camera off.
  // When each happened goes to timing.json for the checks of the video on the Rust side.
  const started = Date.now();
  await alice.waitForTimeout(1500);
  const shareFrom = Date.now() - started;
  await bob.getByRole('button', { name: 'Share screen' }).click();
  await alice.locator('.tile.screen').waitFor({ timeout: 10000 });
  await alice.waitForTimeout(1500);
  await bob.getByRole('button', { name: 'Stop sharing' }).click();
  const shareUntil = Date.now() - started;
  await bob.getByRole('button', { name: 'Camera off' }).click();
  const cameraOffAt = Date.now() - started;
  await alice.waitForTimeout(2500);
  await alice.getByRole('button', { name: '■ Stop recording' }).click();
  const recorded = Date.now() - started;
  mkdirSync(artifacts, { recursive: true });
  writeFileSync(join(artifacts, 'timing.json'), JSON.stringify({ shareFrom, shareUntil, cameraOffAt, recorded }));
  await bob.locator('#recording-indicator').waitFor({ state: 'hidden', timeout: 10000 });
  check(alice.url() === meetingUrl, 'recording did not navigate away from the call');
  check(await alice.locator('#in-call').isVisible(), 'Alice is still in the call');

  // The composition runs in the background; the panel follows it by itself.
  await alice.locator('#recordings .badge.rec-composing, #recordings .badge.rec-ready').first().waitFor({ timeout: 10000 });
  await shot(alice, artifacts, '02-composing');
  await alice.locator('#recordings .badge', { hasText: 'ready' }).waitFor({ timeout: 60000 });
  const closes = await bob.evaluate(() => window.__floo.stats.closes);
  check(closes.length === 0, `Bob's connection never dropped (it closed: ${JSON.stringify(closes)})`);
  const files = await alice.locator('#recordings .files a[download]').allTextContents();
  check(files.includes('Meeting video (MP4)'), `the meeting video is offered (saw ${files})`);
  check(files.filter((f) => f.endsWith("'s tracks (WebM)")).length === 2, `tracks of each participant (saw ${files})`);
  check(files.includes("Bob's screen share (WebM)"), `Bob's screen share (saw ${files})`);
  await shot(alice, artifacts, '03-ready');

  const href = await alice.locator('#recordings a', { hasText: 'Meeting video (MP4)' }).getAttribute('href');
  const whole = await alice.request.get(base + href);
  check(whole.status() === 200, `download: ${whole.status()}`);
  check(whole.headers()['content-type'] === 'video/mp4', `type ${whole.headers()['content-type']}`);
  check(/^attachment; filename="floo-Podcast-\d+\.mp4"$/.test(whole.headers()['content-disposition']),
    `disposition ${whole.headers()['content-disposition']}`);
  const body = await whole.body();
  const part = await alice.request.get(base + href, { headers: { Range: 'bytes=100-1099' } });
  check(part.status() === 206, `range: ${part.status()}`);
  check(part.headers()['content-range'] === `bytes 100-1099/${body.length}`, `content-range ${part.headers()['content-range']}`);
  check(Buffer.compare(await part.body(), body.subarray(100, 1100)) === 0, 'the range holds the same bytes');

  // It plays here: Chromium decodes H.264 + AAC from the download address.
  const played = await alice.evaluate(async (src) => {
    const video = document.createElement('video');
    video.muted = true;
    video.src = src;
    document.body.append(video);
    await video.play();
    await new Promise((r) => setTimeout(r, 1500));
    const result = { width: video.videoWidth, time: video.currentTime, duration: video.duration };
    video.remove();
    return result;
  }, href);
  check(played.width === 1280 && played.time > 0.5 && Math.abs(played.duration * 1000 - recorded) < 1500,
    `the meeting video plays in Chromium: ${JSON.stringify(played)}`);

  // The team's meeting list shows the recording with its state, length and size.
  await bob.goto(meetingUrl.replace(/\/meetings\/\d+$/, ''));
  const brief = bob.locator('.recording-briefs li', { hasText: 'Recording 1' });
  await brief.locator('.badge', { hasText: 'ready' }).waitFor();
  check(/ · \d+ s · [\d.]+ MB/.test(await brief.textContent()), `length and size on the team page: ${await brief.textContent()}`);
  await shot(bob, artifacts, '04-team-page');

  const eve = await signIn(browser, base, 'Eve');
  const refused = await eve.request.get(base + href);
  check(refused.status() === 404, `a non-member gets 404 (got ${refused.status()})`);
  console.log('recording browser walk: ok');
});
