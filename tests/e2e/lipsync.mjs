// Lips and voice in a recording, from a browser: Alice's camera is a file that flashes white
// and her microphone a file that clicks, every two seconds (Chromium's fake capture devices
// playing them; "Original sound", so no voice processing touches the clicks). She is
// recorded for a few minutes in a call with Bob (muted, camera off). Where each flash and
// click entered the call is taken on her side, from what goes into her encoders (the same
// timestamps that travel with the frames); the Rust side finds them again in her recorded
// file and in the composed meeting video and compares the offsets of each pair.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { args, withBrowser, teamWith, check, shot } from './lib.mjs';

const { base, artifacts } = args();
const seconds = Number(process.env.FLOO_LIPSYNC_SECONDS || 180);
const video = process.env.FLOO_LIPSYNC_VIDEO;
const audio = process.env.FLOO_LIPSYNC_AUDIO;
check(video && audio, 'FLOO_LIPSYNC_VIDEO and FLOO_LIPSYNC_AUDIO name the fake devices\' files');

/**
 * Runs in Alice's page before its own scripts: notes the capture time of every flash that
 * reaches the largest camera layer's encoder and of every click that reaches the
 * microphone's, as `window.__marks`.
 */
function watchEncoders() {
  const marks = { flashes: [], clicks: [] };
  window.__marks = marks;
  let quiet = Infinity; // samples since the sound was last loud
  const encodeAudio = AudioEncoder.prototype.encode;
  AudioEncoder.prototype.encode = function (data) {
    try {
      const samples = new Float32Array(data.numberOfFrames);
      data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
      samples.forEach((s, i) => {
        const level = Math.abs(s);
        if (level > 0.2 && quiet > data.sampleRate / 10) marks.clicks.push(data.timestamp + (i / data.sampleRate) * 1e6);
        if (level > 0.2) quiet = 0;
        else if (level < 0.02) quiet += 1;
      });
    } catch (e) { marks.error = String(e); }
    return encodeAudio.call(this, data);
  };
  let bright = false;
  let reading = Promise.resolve(); // one copy at a time, in order: no frame is skipped
  const encodeVideo = VideoEncoder.prototype.encode;
  VideoEncoder.prototype.encode = function (frame, options) {
    if (frame.displayWidth >= 640) {
      // Read a copy: the caller closes the frame as soon as this returns.
      const copy = frame.clone();
      reading = reading.then(async () => {
        const buffer = new Uint8Array(copy.allocationSize());
        const layout = await copy.copyTo(buffer);
        const rgb = /^(RGB|BGR)/.test(copy.format);
        const { offset, stride } = layout[0];
        let sum = 0;
        let n = 0;
        for (let y = 0; y < copy.codedHeight; y += 8) {
          for (let x = 0; x < copy.codedWidth; x += 8) {
            sum += buffer[offset + y * stride + x * (rgb ? 4 : 1) + (rgb ? 1 : 0)];
            n += 1;
          }
        }
        const now = sum / n > 128;
        if (now && !bright) marks.flashes.push(copy.timestamp);
        bright = now;
      }).catch((e) => { marks.error = String(e); }).finally(() => copy.close());
    }
    return encodeVideo.call(this, frame, options);
  };
}

await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members: [bob] } = await teamWith(browser, base, 'Lipsync', 'Alice', ['Bob']);
  await alice.addInitScript(watchEncoders);
  await alice.getByLabel('Title').fill('Clapperboard');
  await alice.getByRole('button', { name: 'Start meeting' }).click();
  await alice.locator('#call').waitFor();
  await bob.goto(alice.url());
  await alice.reload(); // the encoders are watched from the page's start
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
  }
  await alice.getByLabel('Original sound').check();
  await alice.waitForTimeout(500);
  for (const page of [alice, bob]) await page.getByRole('button', { name: 'Join call' }).click();
  await bob.getByRole('button', { name: 'Mute' }).click();
  await bob.getByRole('button', { name: 'Camera off' }).click();
  await alice.waitForFunction(() => window.__floo.call.participants.size === 1, null, { timeout: 20000 });
  await shot(alice, artifacts, '01-in-call');
  await alice.waitForFunction(() => window.__marks.flashes.length > 1 && window.__marks.clicks.length > 1, null, { timeout: 20000 })
    .catch((e) => { throw new Error(`no marks reach Alice's encoders: ${JSON.stringify(window.__marks ?? 'no watch')} (${e.message})`); });

  await alice.getByRole('button', { name: '● Start recording' }).click();
  await alice.locator('#recording-indicator').waitFor({ state: 'visible', timeout: 10000 });
  const startedUs = Date.now() * 1000;
  await alice.waitForTimeout(seconds * 1000);
  await alice.getByRole('button', { name: '■ Stop recording' }).click();
  await alice.locator('#recording-indicator').waitFor({ state: 'hidden', timeout: 10000 });
  const marks = await alice.evaluate(() => window.__marks);
  check(!marks.error, `reading the encoders' input failed: ${marks.error}`);
  const closes = await alice.evaluate(() => window.__floo.stats.closes);
  check(closes.length === 0, `Alice's connection never dropped (it closed: ${JSON.stringify(closes)})`);
  await alice.locator('#recordings .badge', { hasText: 'ready' }).waitFor({ timeout: 120000 });
  // Both leave, so that the call is over when the next walk starts.
  for (const page of [alice, bob]) {
    await page.getByRole('button', { name: 'Leave call' }).click();
    await page.locator('#lobby').waitFor({ state: 'visible', timeout: 10000 });
  }
  writeFileSync(join(artifacts, 'marks.json'), JSON.stringify({ startedUs, seconds, ...marks }));
  console.log(`lipsync: ${marks.flashes.length} flashes and ${marks.clicks.length} clicks entered Alice's encoders`);
}, { args: [`--use-file-for-fake-video-capture=${video}`, `--use-file-for-fake-audio-capture=${audio}`] });
