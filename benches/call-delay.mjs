// Mouth to ear and camera to screen, measured from outside the client (run by
// benches/call_delay.rs, which starts Floo and the impairment proxy).
//
// The speaker's Chromium captures files instead of a camera and a microphone: a click
// every 0.5 s and a white flash every second. The moment each click and flash enters the
// speaker's own microphone and camera streams (read with MediaStreamTrackProcessor from
// clones of the tracks) is compared with the moment it comes out of the listener's audio
// output (a tap on what the page plays, plus the output latency) and is painted on the
// listener's screen — both pages on this machine, on one clock. Scenarios, in one run:
// Floo's adaptive playout and its old fixed 60 ms playout, on a clean loopback and with
// the listener's link impaired (40 ± 15 ms, 2 % loss, both ways), and a plain WebRTC call
// between the same two browsers (an RTCPeerConnection pair, no server).
//
// node benches/call-delay.mjs BASE_URL IMPAIRED_BASE_URL [SECONDS]
import { chromium } from '../tests/e2e/node_modules/playwright-core/index.mjs';
import { createTeam, startMeeting, joinTeam, joinCall } from '../tests/e2e/lib.mjs';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, impairedBase, secondsArg] = process.argv.slice(2);
const SECONDS = Number(secondsArg || 15);
const dir = mkdtempSync(join(tmpdir(), 'floo-delay-'));
const clicks = join(dir, 'clicks.wav');
const flashes = join(dir, 'flash.mjpeg');
execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i',
  "aevalsrc=if(lt(mod(t\\,0.5)\\,0.006)\\,0.8*sin(2*PI*1000*t)\\,0):s=48000:d=20", '-ac', '1', '-c:a', 'pcm_s16le', clicks]);
execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i',
  "color=c=0x404040:s=640x360:r=30:d=20,drawbox=c=white:t=fill:enable='lt(mod(t\\,1)\\,0.03)'", '-c:v', 'mjpeg', '-q:v', '5', flashes]);

const flags = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--autoplay-policy=no-user-gesture-required'];
const executablePath = process.env.FLOO_CHROMIUM || '/usr/bin/chromium';
const speakerBrowser = await chromium.launch({ executablePath, headless: true, args: [...flags,
  `--use-file-for-fake-audio-capture=${clicks}`, `--use-file-for-fake-video-capture=${flashes}`] });
const listenerBrowser = await chromium.launch({ executablePath, headless: true, args: flags });
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Records when clicks and flashes enter `stream` (the speaker's own capture), on the wall clock. */
function watchCapture(streamExpr) {
  return `(() => {
    const stream = ${streamExpr};
    const wall = () => performance.timeOrigin + performance.now();
    window.__captured = { audio: [], video: [] };
    const audio = new MediaStreamTrackProcessor({ track: stream.getAudioTracks()[0].clone() }).readable.getReader();
    let quietSince = 0;
    (async () => { for (;;) { const { value, done } = await audio.read(); if (done) return;
      const n = value.numberOfFrames; const s = new Float32Array(n); value.copyTo(s, { planeIndex: 0, format: 'f32-planar' });
      const now = wall(), rate = value.sampleRate; value.close();
      for (let i = 0; i < n; i++) { const t = now - (n - i) / rate * 1000;
        if (Math.abs(s[i]) > 0.2) { if (t - quietSince > 200) window.__captured.audio.push(t); quietSince = t; } } } })();
    const video = new MediaStreamTrackProcessor({ track: stream.getVideoTracks()[0].clone() }).readable.getReader();
    const canvas = new OffscreenCanvas(8, 8); const ctx = canvas.getContext('2d', { willReadFrequently: true }); let bright = false;
    (async () => { for (;;) { const { value, done } = await video.read(); if (done) return; const now = wall();
      ctx.drawImage(value, 0, 0, 8, 8); value.close(); const d = ctx.getImageData(0, 0, 8, 8).data;
      let sum = 0; for (let i = 0; i < d.length; i += 4) sum += d[i]; const luma = sum / 64;
      if (luma > 180 && !bright) window.__captured.video.push(now); bright = luma > 180; } })();
  })()`;
}

/** A worklet that reports when a click comes out of whatever is connected to it. */
const TAP = `class Tap extends AudioWorkletProcessor { constructor() { super(); this.quiet = 0; }
  process(inputs) { const x = inputs[0][0]; if (!x) return true;
    for (let i = 0; i < x.length; i++) { const t = currentTime + i / sampleRate;
      if (Math.abs(x[i]) > 0.1) { if (t - this.quiet > 0.2) this.port.postMessage(t); this.quiet = t; } }
    return true; } } registerProcessor('tap', Tap);`;

/** Records when clicks are heard from `nodeExpr` (in `ctxExpr`) and flashes are painted by `paintExpr`. */
function watchOutput(ctxExpr, nodeExpr, paint) {
  return `(async () => {
    const ctx = ${ctxExpr};
    const node = await ${nodeExpr};
    window.__heard = { audio: [], video: [] };
    const url = URL.createObjectURL(new Blob([${JSON.stringify(TAP)}], { type: 'text/javascript' }));
    await ctx.audioWorklet.addModule(url);
    const tap = new AudioWorkletNode(ctx, 'tap');
    node.connect(tap);
    const silent = ctx.createGain(); silent.gain.value = 0; tap.connect(silent).connect(ctx.destination);
    tap.port.onmessage = (e) => {
      const latency = (ctx.baseLatency || 0) + (ctx.outputLatency || 0);
      window.__heard.audio.push(performance.timeOrigin + performance.now() + (e.data - ctx.currentTime + latency) * 1000);
    };
    ${paint}
  })()`;
}

/**
 * For each captured moment, the first heard one after it and before the next one was
 * captured (clicks are 0.5 s apart, flashes 1 s): the delays. A click lost on the way
 * is missed (and counted as not heard), not matched with the next one.
 */
function delays(captured, heard) {
  const out = [];
  captured.forEach((c, i) => {
    const next = captured[i + 1] ?? c + 1000;
    const h = heard.find((t) => t > c && t < next);
    if (h !== undefined) out.push(h - c);
  });
  return out;
}

const pct = (xs, p) => { if (!xs.length) return NaN; const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function signIn(browser, at, name) {
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  await page.goto(`${at}/login`);
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Sign in (dev)' }).click();
  await page.getByRole('heading', { name: `Hello, ${name}` }).waitFor();
  return page;
}

let run = 0;
async function flooCall(listenerAt, playout, { recovery = false } = {}) {
  run += 1;
  const speaker = await signIn(speakerBrowser, base, `Speaker ${run}`);
  const { invite } = await createTeam(speaker, `Delay ${run}`);
  const meeting = await startMeeting(speaker, 'Delay');
  const listener = await signIn(listenerBrowser, listenerAt, `Listener ${run}`);
  await joinTeam(listener, listenerAt, invite, `Delay ${run}`);
  await listener.evaluate((p) => localStorage.setItem('floo.playout', p), playout);
  await listener.goto(listenerAt + meeting);
  for (const page of [speaker, listener]) {
    if (!(await page.locator('#preview').count())) {
      throw new Error(`no meeting at ${page.url()}: ${(await page.locator('main').innerText()).slice(0, 400)}`);
    }
    await joinCall(page);
  }
  await listener.waitForFunction(() => window.__floo.call.playoutNode && window.__floo.call.participants.size === 1, null, { timeout: 20000 });
  await speaker.evaluate(watchCapture('window.__floo.call.stream'));
  await listener.evaluate(watchOutput('window.__floo.call.audioContext', 'window.__floo.call.playoutNode', `
    let bright = false;
    const tick = () => { const canvas = document.querySelector('#grid .tile:not(.self) canvas');
      if (canvas) { const d = canvas.getContext('2d').getImageData(canvas.width >> 1, canvas.height >> 1, 1, 1).data;
        if (d[0] > 180 && !bright) window.__heard.video.push(performance.timeOrigin + performance.now()); bright = d[0] > 180; }
      requestAnimationFrame(tick); };
    requestAnimationFrame(tick);`));
  const result = await measure(speaker, listener);
  if (recovery) result.recovery = await recoveries(speaker, listener);
  await speaker.context().close();
  await listener.context().close();
  return result;
}

/**
 * Video back after a lost picture: the speaker's periodic keyframes are switched off, so
 * only a keyframe request can mend the listener's decoder; the listener's decoder is reset
 * (as after a lost group: it needs a keyframe) twenty times, and each time the delay until
 * it decodes a picture again is taken, in the listener's page.
 */
async function recoveries(speaker, listener) {
  await speaker.evaluate(() => { window.__floo.call.gopFrames = 1e9; });
  await pause(1500); // the last scheduled keyframe has passed
  return listener.evaluate(async () => {
    const f = window.__floo;
    const id = [...f.call.participants.keys()][0];
    const out = [];
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 700)); // past the client's 500 ms between requests
      const before = f.stats.decodedFrames[id] || 0;
      const t = performance.now();
      f.resetDecoder(id);
      while ((f.stats.decodedFrames[id] || 0) <= before && performance.now() - t < 5000) await new Promise((r) => setTimeout(r, 2));
      out.push(performance.now() - t);
    }
    return out;
  });
}

async function webrtcCall() {
  const speaker = await signIn(speakerBrowser, base, 'WebRTC speaker');
  const listener = await signIn(listenerBrowser, base, 'WebRTC listener');
  await speaker.evaluate(async () => {
    window.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360, frameRate: 30 },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
    window.pc = new RTCPeerConnection();
    for (const t of window.stream.getTracks()) window.pc.addTrack(t, window.stream);
    window.candidates = []; window.pc.onicecandidate = (e) => e.candidate && window.candidates.push(e.candidate.toJSON());
  });
  await listener.evaluate(() => {
    window.pc = new RTCPeerConnection();
    window.candidates = []; window.pc.onicecandidate = (e) => e.candidate && window.candidates.push(e.candidate.toJSON());
    window.remote = new MediaStream();
    window.pc.ontrack = (e) => window.remote.addTrack(e.track);
  });
  const offer = await speaker.evaluate(async () => { const o = await window.pc.createOffer(); await window.pc.setLocalDescription(o); return o; });
  const answer = await listener.evaluate(async (o) => { await window.pc.setRemoteDescription(o); const a = await window.pc.createAnswer(); await window.pc.setLocalDescription(a); return a; }, offer);
  await speaker.evaluate((a) => window.pc.setRemoteDescription(a), answer);
  await pause(1000);
  for (const [from, to] of [[speaker, listener], [listener, speaker]]) {
    for (const c of await from.evaluate(() => window.candidates)) await to.evaluate((c) => window.pc.addIceCandidate(c), c);
  }
  await listener.waitForFunction(() => window.remote.getTracks().length === 2 && window.pc.connectionState === 'connected', null, { timeout: 20000 });
  await listener.evaluate(() => {
    const audio = new Audio(); audio.srcObject = window.remote; audio.play();
    window.video = document.createElement('video'); window.video.muted = true; window.video.srcObject = window.remote;
    document.body.append(window.video); window.video.play();
    window.ctx = new AudioContext(); window.source = window.ctx.createMediaStreamSource(window.remote);
  });
  await speaker.evaluate(watchCapture('window.stream'));
  await listener.evaluate(watchOutput('window.ctx', 'window.source', `
    const canvas = document.createElement('canvas'); canvas.width = 8; canvas.height = 8; const c2 = canvas.getContext('2d');
    let bright = false;
    const onFrame = (now, meta) => { c2.drawImage(window.video, 0, 0, 8, 8); const d = c2.getImageData(4, 4, 1, 1).data;
      if (d[0] > 180 && !bright) window.__heard.video.push(performance.timeOrigin + meta.expectedDisplayTime); bright = d[0] > 180;
      window.video.requestVideoFrameCallback(onFrame); };
    window.video.requestVideoFrameCallback(onFrame);`));
  const result = await measure(speaker, listener);
  await speaker.context().close();
  await listener.context().close();
  return result;
}

async function measure(speaker, listener) {
  await pause(4000); // settle
  await speaker.evaluate(() => { window.__captured.audio = []; window.__captured.video = []; });
  await pause(SECONDS * 1000);
  const captured = await speaker.evaluate(() => window.__captured);
  await pause(1500); // the last ones on their way
  const heard = await listener.evaluate(() => window.__heard);
  // What Floo's own client makes of it: network transit, the jitter buffer, its figure.
  const inside = await listener.evaluate(() => {
    const f = window.__floo;
    if (!f) return null;
    const id = [...f.call.participants.keys()][0];
    const mid = (xs) => (xs?.length ? [...xs].sort((a, b) => a - b)[xs.length >> 1] : NaN);
    const p = f.stats.playout[id] || {};
    const ctx = f.call.audioContext;
    return { transit: mid(f.stats.transits[`${id}:audio`]), target: p.target, depth: p.depth, delay: mid(f.stats.audioDelays[id]),
      baseLatency: (ctx?.baseLatency || 0) * 1000, outputLatency: (ctx?.outputLatency || 0) * 1000 };
  });

  const audio = delays(captured.audio, heard.audio);
  const video = delays(captured.video, heard.video);
  return { audio, video, clicks: captured.audio.length, flashes: captured.video.length, inside };
}

const rows = [];
const report = (name, r) => {
  const row = {
    scenario: name,
    audio_p50: pct(r.audio, 0.5), audio_p95: pct(r.audio, 0.95), video_p50: pct(r.video, 0.5), video_p95: pct(r.video, 0.95),
    heard: `${r.audio.length}/${r.clicks}`, seen: `${r.video.length}/${r.flashes}`,
  };
  rows.push(row);
  const inside = r.inside && `  listener's own view: ${Object.entries(r.inside).map(([k, v]) => `${k} ${Number(v).toFixed(1)}`).join(', ')} (ms)`;
  if (r.recovery) console.log(`${name}: video decoded again after a lost picture p50 ${pct(r.recovery, 0.5).toFixed(1)} ms, p95 ${pct(r.recovery, 0.95).toFixed(1)} ms (${r.recovery.length} times)`);
  console.log(`${name.padEnd(34)} audio p50 ${row.audio_p50.toFixed(1).padStart(6)} p95 ${row.audio_p95.toFixed(1).padStart(6)}  video p50 ${row.video_p50.toFixed(1).padStart(6)} p95 ${row.video_p95.toFixed(1).padStart(6)}  voice - picture ${(row.audio_p50 - row.video_p50).toFixed(1).padStart(6)} ms  (clicks heard ${row.heard}, flashes seen ${row.seen})`);
  if (inside) console.log(inside);
};
try {
  report('WebRTC (clean loopback)', await webrtcCall());
  report('Floo adaptive (clean loopback)', await flooCall(base, 'adaptive', { recovery: true }));
  report('Floo fixed 60 ms (clean loopback)', await flooCall(base, 'fixed'));
  if (impairedBase) {
    report('Floo adaptive (40±15 ms, 2 % loss)', await flooCall(impairedBase, 'adaptive', { recovery: true }));
    report('Floo fixed 60 ms (40±15 ms, 2 % loss)', await flooCall(impairedBase, 'fixed'));
  }
  const webrtc = rows[0].audio_p50;
  console.log(`Floo adaptive / WebRTC, audio p50 on a clean loopback: ${(rows[1].audio_p50 / webrtc).toFixed(2)}x`);
} finally {
  await speakerBrowser.close();
  await listenerBrowser.close();
}
