// Joining however people join, and changing devices in the call (Chromium, fake devices):
// - Bob clicks "Join call" the moment it shows, while his camera and microphone take 3 s
//   to open (as behind a permission prompt): Alice still sees and hears him.
// - Carol refuses the camera and microphone: she joins to listen, is told so with a way to
//   retry, and Alice lists her without a picture. She then allows them, with "Original
//   sound" on (no voice processing: Chromium's fake microphone is then stereo at 44.1 kHz,
//   as many USB headsets are) and presses the button: Alice sees and hears her, and the
//   recording holds her voice (checked by the Rust side with ffprobe and volumedetect);
//   Bob's and Carol's recordings cards show the recording without a reload.
// - Bob switches camera and microphone in the call: Alice keeps decoding both, and
//   nobody reconnects.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { args, check, joinCall, shot, startMeeting, teamWith, withBrowser } from './lib.mjs';

const { base, artifacts } = args();

/** What `page` decodes of the person named `name`: video frames, audio frames, loudest. */
const from = (page, name) => page.evaluate((who) => {
  const f = window.__floo;
  const entry = [...f.call.participants.entries()].find(([, p]) => p.name === who);
  if (!entry) return null;
  const [id] = entry;
  return { video: f.stats.decodedFrames[id] || 0, audio: f.stats.audio[id] || 0, loudest: f.stats.loudest[id] || 0 };
}, name);

/** Waits until `page` has decoded more of `name` than `since` (video and audio), within `ms`. */
async function keepsDecoding(page, name, since, what, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = await from(page, name);
    if (now && now.video >= (since?.video || 0) + 30 && now.audio >= (since?.audio || 0) + 50 && now.loudest > 0.01) return now;
    check(Date.now() < deadline, `${what}: decoded of ${name} ${JSON.stringify(now)} (before: ${JSON.stringify(since)})`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members: [bob, carol] } = await teamWith(browser, base, 'Devices', 'Alice', ['Bob', 'Carol']);
  const meeting = await startMeeting(alice, 'Any device');
  await joinCall(alice);

  // Bob's camera and microphone open 3 s after they are asked for; he clicks at once.
  await bob.context().addInitScript(() => {
    const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (c) => new Promise((resolve) => setTimeout(resolve, 3000)).then(() => open(c));
  });
  await bob.goto(base + meeting);
  await bob.getByRole('button', { name: 'Join call' }).click();
  const bobAtJoin = await bob.evaluate(() => document.getElementById('preview').videoWidth);
  check(bobAtJoin === 0, 'Bob clicked before his camera was open');
  await keepsDecoding(alice, 'Bob', null, 'Bob joined before his camera opened');

  // Carol refuses (the page's request is denied) and joins anyway.
  await carol.context().addInitScript(() => {
    const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    window.__refuse = true;
    navigator.mediaDevices.getUserMedia = (c) => (window.__refuse
      ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError'))
      : open(c));
  });
  await carol.goto(base + meeting);
  await carol.locator('#call-status', { hasText: 'did not allow' }).waitFor({ timeout: 10000 });
  await carol.getByRole('button', { name: 'Join call' }).click();
  await carol.locator('#call-status', { hasText: 'You joined to listen' }).waitFor({ timeout: 15000 });
  await carol.getByRole('button', { name: 'Use camera and microphone' }).waitFor();
  await alice.locator('#grid .tile', { hasText: 'Carol' }).waitFor({ timeout: 10000 });
  await keepsDecoding(carol, 'Alice', null, 'Carol, listening, still gets Alice');
  check((await from(alice, 'Carol')).video === 0, 'Carol sends no picture while she refuses');
  await shot(carol, artifacts, '01-carol-listening');

  // Carol allows her devices, with original sound, and presses the button.
  await carol.evaluate(() => { window.__refuse = false; });
  await carol.evaluate(() => { document.getElementById('original-sound').checked = true; });
  await carol.getByRole('button', { name: 'Use camera and microphone' }).click();
  await keepsDecoding(alice, 'Carol', null, 'Carol allowed her devices after joining');
  const carolMic = await carol.evaluate(() => window.__floo.stats.microphone);
  check(carolMic?.sampleRate === 44100 && carolMic?.channels === 2, `Carol's microphone is 44.1 kHz stereo: ${JSON.stringify(carolMic)}`);
  check(await carol.locator('#media-retry').isHidden(), 'the button goes once it worked');

  // Alice records a few seconds of Carol's voice.
  await alice.getByRole('button', { name: '● Start recording' }).click();
  await alice.locator('#recording-indicator').waitFor({ state: 'visible', timeout: 10000 });
  const started = Date.now();
  await alice.waitForTimeout(4000);
  await alice.getByRole('button', { name: '■ Stop recording' }).click();
  const recorded = Date.now() - started;
  // The files are finished once the recording is composing (or done).
  await alice.locator('#recordings .badge', { hasText: /composing|ready/ }).first().waitFor({ timeout: 30000 });
  // The others' recordings cards follow live (Carol may not record: no buttons for her).
  for (const page of [bob, carol]) await page.locator('#recordings .badge', { hasText: /composing|ready/ }).first().waitFor({ timeout: 15000 });
  check(await carol.getByRole('button', { name: '● Start recording' }).count() === 0, 'the card Carol gets is hers: no recording controls');
  const ids = {};
  for (const [name, page] of [['Alice', alice], ['Bob', bob], ['Carol', carol]]) ids[name] = await page.evaluate(() => window.__floo.call.you.userId);
  writeFileSync(join(artifacts, 'recording.json'), JSON.stringify({ recorded, ids }));

  // Bob switches camera, then microphone, in the call.
  const devices = await bob.evaluate(() => [...document.querySelectorAll('#call-camera-select option, #call-mic-select option')]
    .map((o) => ({ select: o.parentElement.id, value: o.value, label: o.textContent })));
  const cameras = devices.filter((d) => d.select === 'call-camera-select');
  const mics = devices.filter((d) => d.select === 'call-mic-select');
  check(cameras.length >= 2 && mics.length >= 2, `Bob can pick devices in the call: ${JSON.stringify(devices)}`);
  for (const [select, options, kind] of [['#call-camera-select', cameras, 'camera'], ['#call-mic-select', mics, 'microphone']]) {
    const current = await bob.locator(select).inputValue();
    const other = options.find((o) => o.value !== current);
    const before = await from(alice, 'Bob');
    await bob.locator(select).selectOption(other.value);
    await bob.waitForFunction((n) => (window.__floo.stats.deviceSwitches || 0) >= n, kind === 'camera' ? 1 : 2, { timeout: 10000 });
    const using = await bob.evaluate((k) => {
      const t = k === 'camera' ? window.__floo.call.stream.getVideoTracks()[0] : window.__floo.call.stream.getAudioTracks()[0];
      return t.getSettings().deviceId;
    }, kind);
    check(using === other.value, `Bob's ${kind} is now ${other.label}`);
    await keepsDecoding(alice, 'Bob', before, `after Bob switched ${kind}`);
  }
  await shot(bob, artifacts, '02-bob-switched-devices');
  for (const [name, page] of [['Alice', alice], ['Bob', bob], ['Carol', carol]]) {
    const { closes, reconnects } = await page.evaluate(() => window.__floo.stats);
    check(closes.length === 0 && reconnects === 0, `${name} never reconnected (${JSON.stringify(closes)})`);
  }
  console.log(`devices walk: ok; Carol's microphone ${JSON.stringify(carolMic)}`);
}, { devices: 2 });
