// Call quality over an impaired link: Bob's browser reaches the relay through a UDP
// proxy (tests/it/impair.rs) that delays every datagram 40 ms ± 15 ms (so they reorder)
// and drops 2 % of them, both ways; Alice's link is clean. Then:
// 1. Bob's audio keeps playing: Alice's voice is decoded and played without a gap
//    longer than concealment covers, and its capture → playout delay is reported.
// 2. A spike: the link stalls for 500 ms. Bob's jitter buffer fills with the stall's
//    backlog, then comes back down to its target by itself.
// 3. Recovery: Alice publishes with her periodic keyframes switched off, and Bob's
//    decoder of her camera fails: his client asks for a keyframe through the relay, Alice
//    starts a new group with one, and Bob decodes again — which only that request
//    could have brought about.
import { connect } from 'node:net';
import { args, launch, signIn, createTeam, startMeeting, joinTeam, joinCall, shot, check } from './lib.mjs';

const { base, artifacts } = args();
const clean = base.replace('//localhost', '//127.0.0.1');
const impaired = base.replace('//localhost', '//127.0.0.2');
const control = process.env.FLOO_IMPAIR_CONTROL;
check(control, 'the impairment proxy is running (FLOO_IMPAIR_CONTROL)');
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const command = (line) => new Promise((resolve, reject) => {
  const [host, port] = control.split(':');
  const socket = connect(Number(port), host, () => socket.end(`${line}\n`, resolve));
  socket.on('error', reject);
});
const percentile = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

/** What Bob's client knows of Alice's voice and picture. */
const ofAlice = (page) => page.evaluate(() => {
  const f = window.__floo;
  const id = [...f.call.participants.keys()][0];
  return {
    id, playout: f.stats.playout[id], audio: f.stats.audio[id] || 0, decoded: f.stats.decodedFrames[id] || 0,
    audioDelays: f.stats.audioDelays[id] || [], videoDelays: f.stats.videoDelays[id] || [],
    keyframeRequests: f.stats.keyframeRequests || 0,
  };
});

const browser = await launch();
try {
  const alice = await signIn(browser, clean, 'Alice');
  const { invite } = await createTeam(alice, 'Far away');
  const meeting = await startMeeting(alice, 'Over a bad line');
  const bob = await signIn(browser, impaired, 'Bob');
  await joinTeam(bob, impaired, invite, 'Far away');
  await bob.goto(impaired + meeting);
  for (const page of [alice, bob]) {
    await joinCall(page);
  }
  await bob.waitForFunction(() => {
    const f = window.__floo;
    const id = [...f.call.participants.keys()][0];
    return id !== undefined && f.stats.playout[id]?.started && (f.stats.decodedFrames[id] || 0) > 30;
  }, null, { timeout: 30000 });

  // 1. Steady over the impaired link.
  await pause(3000); // the buffer settles on its target
  await bob.evaluate(() => window.__floo.measureAfresh());
  const before = await ofAlice(bob);
  await pause(8000);
  const steady = await ofAlice(bob);
  const heard = steady.audio - before.audio;
  check(heard >= 300, `Alice's voice kept coming over the impaired link (${heard} frames in 8 s)`);
  check(steady.playout.longestGapMs <= 120, `no gap longer than concealment covers (longest ${steady.playout.longestGapMs} ms)`);
  const delays = steady.audioDelays.slice(-60);
  check(delays.length >= 30, 'the capture → playout delay is reported');
  const figures = {
    audio_p50: percentile(delays, 0.5), audio_p95: percentile(delays, 0.95),
    video_p50: percentile(steady.videoDelays.slice(-60), 0.5), target: steady.playout.target, depth: steady.playout.depth,
    concealed_ms: steady.playout.concealedMs - before.playout.concealedMs,
  };
  console.log(`impaired link: ${JSON.stringify(figures)}`);
  console.log(`transits: ${JSON.stringify(await bob.evaluate(() => Object.fromEntries(Object.entries(window.__floo.stats.transits).map(([k, v]) => [k, [...v].sort((a, b) => a - b).filter((_, i, a) => [0.1, 0.5, 0.9, 0.99].some((p) => i === Math.floor(p * a.length)))]))))}`);
  check(Math.abs(figures.video_p50 - figures.audio_p50) <= 45, `lips and voice within 45 ms (${JSON.stringify(figures)})`);
  await shot(bob, artifacts, '01-impaired-link');

  // 2. A 500 ms stall, then back to where it was. (The relay gives up audio it cannot
  // deliver within 250 ms, so most of the stall is concealed rather than queued: the
  // delay must not keep what the stall added.)
  const delayNow = async () => percentile((await ofAlice(bob)).audioDelays.slice(-10), 0.5);
  const before500 = await delayNow();
  await command('stall 500');
  let peakDepth = 0;
  let peakDelay = 0;
  for (let i = 0; i < 25; i++) {
    const now = await ofAlice(bob);
    peakDepth = Math.max(peakDepth, now.playout.depth);
    peakDelay = Math.max(peakDelay, now.audioDelays[now.audioDelays.length - 1] || 0);
    await pause(100);
  }
  await pause(6000);
  const after500 = await delayNow();
  const depthAfter = (await ofAlice(bob)).playout.depth;
  console.log(`stall: voice delay ${Math.round(before500)} ms before, up to ${Math.round(peakDelay)} ms during, ${Math.round(after500)} ms six seconds later; buffer peaked at ${Math.round(peakDepth)} ms, ${Math.round(depthAfter)} ms at the end`);
  check(peakDelay > before500 + 50, `the stall was felt (delay ${before500} -> ${peakDelay} ms)`);
  check(after500 <= Math.max(before500 * 1.5, before500 + 60), `the delay came back down (${before500} -> ${peakDelay} -> ${after500} ms)`);
  check(depthAfter < Math.max(peakDepth / 2, 120), `the buffer came back down (peak ${peakDepth} ms, now ${depthAfter} ms)`);

  // 3. A decoder failure is mended by a keyframe asked for, not by the next GOP.
  await alice.evaluate(() => { window.__floo.call.gopFrames = 1e9; });
  await pause(1500); // the last scheduled keyframe has passed
  const asked = await alice.evaluate(() => window.__floo.stats.keyframesSent || 0);
  const broken = await ofAlice(bob);
  await bob.evaluate((id) => window.__floo.resetDecoder(id), broken.id);
  const t0 = Date.now();
  await bob.waitForFunction((n) => {
    const f = window.__floo;
    const id = [...f.call.participants.keys()][0];
    return (f.stats.decodedFrames[id] || 0) > n + 10;
  }, broken.decoded, { timeout: 10000 });
  const recovered = Date.now() - t0;
  const mended = await ofAlice(bob);
  const sent = await alice.evaluate(() => window.__floo.stats.keyframesSent || 0);
  check(mended.keyframeRequests > broken.keyframeRequests, 'Bob asked for a keyframe');
  check(sent > asked, `Alice sent one because she was asked (${asked} -> ${sent})`);
  console.log(`decoder reset: decoding again ${recovered} ms later`);
  await shot(bob, artifacts, '02-recovered');
  console.log('call quality browser walk: ok');
} finally {
  await browser.close();
}
