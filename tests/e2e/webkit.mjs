// WebKit, Safari's engine, as far as this machine has it: Debian's WebKitGTK (MiniBrowser)
// driven through WebKitWebDriver with plain W3C WebDriver over HTTP (a small client
// below), under a private Xvfb, with WebKit's mock camera and microphones. Wendy (WebKit)
// creates a team that Chris (Chromium) joins; on the forum each sees the other's comment
// arrive without a reload; Wendy's meeting lobby shows her camera and a moving microphone
// meter; then both hold a call, Wendy over the WebSocket (as Safari does): each decodes
// and paints the other's camera, and WebKit decodes Chris's voice.
//
// WebKitGTK 2.50 runs WebCodecs on GStreamer 1.22, with bugs that shape this walk (see
// src/media/PROTOCOL.md, "WebKitGTK"): Floo's client never calls AudioData.copyTo on
// the microphone's mono audio (which kills WebKit's web process), and WebKit's painting of
// decoded pictures is checked loosely. WebDriver classic has no
// events for script errors: a hook in the page collects them and every script the walk
// runs there hands them over; any fails the walk.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { args, launch, signIn, joinTeam, joinCall, shot, check } from './lib.mjs';

const { base, artifacts } = args();
// Debian's path; FLOO_WEBKIT_BROWSER names another WebKitGTK browser binary.
const MINIBROWSER = process.env.FLOO_WEBKIT_BROWSER || '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
/** The key of an element reference in WebDriver's answers. */
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const started = Date.now();

/** A free TCP port on loopback (for WebKitWebDriver, which takes a port number). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Xvfb on the first free display (it picks and reports it through -displayfd). */
async function startXvfb() {
  const xvfb = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1600x1200x24', '-nolisten', 'tcp'],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
  let log = '';
  xvfb.stderr.on('data', (d) => { log += d; });
  const display = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`Xvfb did not start: ${log}`)), 10000);
    xvfb.stdio[3].on('data', (d) => {
      out += d;
      if (out.includes('\n')) { clearTimeout(timer); resolve(`:${out.trim()}`); }
    });
    xvfb.on('exit', (code) => { clearTimeout(timer); reject(new Error(`Xvfb exited (${code}): ${log}`)); });
  });
  return { display, stop: () => xvfb.kill() };
}

/**
 * WebKitWebDriver on `display`, in a process group of its own (MiniBrowser and WebKit's
 * processes are its children; the group is ended at the end). `env` reaches the browser.
 */
async function startDriver(display, env) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const driver = spawn('WebKitWebDriver', [`--port=${port}`], {
      env: { ...process.env, ...env, DISPLAY: display }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let log = '';
    for (const stream of [driver.stdout, driver.stderr]) stream.on('data', (d) => { log = (log + d).slice(-20000); });
    const stop = () => { try { process.kill(-driver.pid, 'SIGTERM'); } catch (e) { /* gone */ } };
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100 && driver.exitCode === null; i++) {
      if (await fetch(`${url}/status`).then((r) => r.ok, () => false)) return { url, log: () => log, stop };
      await pause(100);
    }
    stop();
    // The port may have been taken between choosing it and the driver binding it.
    if (attempt === 3) throw new Error(`WebKitWebDriver did not start: ${log}`);
  }
}

/** Installed in the page by every script the walk runs there (a new page has lost it). */
const HOOK = `if (!window.__walkErrors) {
  window.__walkErrors = [];
  addEventListener('error', (e) => window.__walkErrors.push(\`\${e.message} (\${e.filename}:\${e.lineno})\`));
  addEventListener('unhandledrejection', (e) => window.__walkErrors.push(\`unhandled rejection: \${e.reason?.message ?? e.reason} \${e.reason?.stack ?? ''}\`));
}`;

/** A WebDriver session: the few commands this walk needs. */
class WebKit {
  constructor(driver) {
    this.driver = driver;
    this.errors = [];
  }

  async command(method, path, body) {
    const response = await fetch(`${this.driver.url}${path}`, {
      method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json().catch(() => ({}));
    if (!response.ok) {
      const crashed = /WebProcess CRASHED|Bail out|double free/.test(this.driver.log()) ? ` — WebKit's log: ${this.driver.log().slice(-1500)}` : '';
      throw new Error(`WebDriver ${method} ${path}: ${response.status} ${JSON.stringify(json.value)}${crashed}`);
    }
    return json.value;
  }

  async open() {
    const value = await this.command('POST', '/session', {
      capabilities: {
        alwaysMatch: {
          'webkitgtk:browserOptions': {
            binary: MINIBROWSER,
            // --automation is not added by the driver when args are given. The mock devices
            // are WebKit's fake camera and microphones, allowed without a prompt; audio may
            // start without a click.
            args: ['--automation', '--enable-mock-capture-devices=true',
              '--features=+MockCaptureDevices,-MockCaptureDevicesPrompt', '--autoplay-policy=allow'],
          },
        },
      },
    });
    this.session = `/session/${value.sessionId}`;
    await this.command('POST', `${this.session}/timeouts`, { script: 30000, pageLoad: 30000, implicit: 0 });
    await this.command('POST', `${this.session}/window/rect`, { width: 1280, height: 1000 });
  }

  async close() {
    if (this.session) await this.command('DELETE', this.session).catch(() => {});
  }

  async goto(url) {
    await this.run(() => null); // collect what the page being left reported
    await this.command('POST', `${this.session}/url`, { url });
  }

  async url() {
    return this.command('GET', `${this.session}/url`);
  }

  /** Runs `fn(...args)` in the page; collects the page's script errors on the way. */
  async run(fn, ...args) {
    const script = `${HOOK}
      const value = (${fn}).apply(null, arguments);
      return { value, errors: window.__walkErrors.splice(0) };`;
    const { value, errors } = await this.command('POST', `${this.session}/execute/sync`, { script, args });
    this.errors.push(...errors);
    return value;
  }

  /** Waits until `fn(...args)` is truthy in the page; returns that value. */
  async waitFor(what, fn, args = [], timeout = 15000) {
    const until = Date.now() + timeout;
    for (;;) {
      const value = await this.run(fn, ...args).catch((e) => (Date.now() < until ? null : Promise.reject(e)));
      if (value) return value;
      if (Date.now() > until) throw new Error(`WebKit: timed out waiting for ${what}`);
      await pause(150);
    }
  }

  async find(xpath) {
    const value = await this.command('POST', `${this.session}/element`, { using: 'xpath', value: xpath });
    return value[ELEMENT];
  }

  /** Waits for the element at `xpath` and clicks it. */
  async click(xpath) {
    await this.waitFor(xpath, (x) => !!document.evaluate(x, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue, [xpath]);
    await this.command('POST', `${this.session}/element/${await this.find(xpath)}/click`, {});
  }

  /** Types `text` into the field at `xpath` (cleared first). */
  async fill(xpath, text) {
    await this.waitFor(xpath, (x) => !!document.evaluate(x, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue, [xpath]);
    const element = await this.find(xpath);
    await this.command('POST', `${this.session}/element/${element}/clear`, {});
    await this.command('POST', `${this.session}/element/${element}/value`, { text });
  }

  async shot(name) {
    // A screenshot taken at once can still show the page before its last change: let it
    // paint twice first.
    await this.command('POST', `${this.session}/execute/async`, {
      script: 'const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));', args: [],
    });
    const png = await this.command('GET', `${this.session}/screenshot`);
    writeFileSync(join(artifacts, `${name}.png`), Buffer.from(png, 'base64'));
  }

  /** Fails the walk if the page reported script errors. */
  async checkErrors() {
    await this.run(() => null);
    check(this.errors.length === 0, `no script errors in WebKit: ${this.errors.join('; ')}`);
  }
}

/** XPath of the form field labelled `label`. */
const field = (label) => `//*[@id=//label[normalize-space()="${label}"]/@for]`;
const button = (name) => `//button[normalize-space()="${name}"]`;
const link = (name) => `//a[normalize-space()="${name}"]`;
/** In the page: whether a heading says `text`; whether a comment holds `text`. */
const hasHeading = (text) => [...document.querySelectorAll('h1, h2')].some((h) => h.textContent.trim() === text);
const hasComment = (text) => [...document.querySelectorAll('#comments .comment')].some((c) => c.textContent.includes(text));

const runtime = mkdtempSync(join(tmpdir(), 'floo-webkit-'));
const xvfb = await startXvfb();
// Stopped on exit as well, should the walk die outside its try block (lib.mjs throws
// Chromium's page errors from an event handler).
process.on('exit', () => xvfb.stop());
const driver = await startDriver(xvfb.display, {
  // WebKit's audio goes through the test's sound server, as Firefox's does; its own
  // files (caches, local storage) go to a fresh directory.
  ...(process.env.FLOO_PULSE_SERVER ? { PULSE_SERVER: process.env.FLOO_PULSE_SERVER } : {}),
  XDG_RUNTIME_DIR: runtime, XDG_CACHE_HOME: join(runtime, 'cache'), XDG_DATA_HOME: join(runtime, 'data'),
});
process.on('exit', () => driver.stop());
const wendy = new WebKit(driver);
const chrome = await launch();
let chris = null;
try {
  await wendy.open();
  const version = await wendy.run(() => navigator.userAgent);

  // Wendy signs in with the dev login and creates a team.
  await wendy.goto(`${base}/login`);
  await wendy.fill(field('Your name'), 'Wendy');
  await wendy.click(button('Sign in (dev)'));
  await wendy.waitFor('the home page', hasHeading, ['Hello, Wendy']);
  await wendy.fill(field('Team name'), 'Safari team');
  await wendy.click(button('Create team'));
  await wendy.waitFor('the team page', hasHeading, ['Safari team']);
  const teamUrl = await wendy.url();
  await wendy.click(link('Invite'));
  const invite = new URL(await wendy.waitFor('the invite link', () => document.getElementById('invite-link')?.value)).pathname;
  await wendy.shot('01-webkit-invite');

  // Chris (Chromium) joins through the invite link.
  chris = await signIn(chrome, base, 'Chris');
  await joinTeam(chris, base, invite, 'Safari team');

  // Wendy posts a topic; Chris comments and Wendy sees it without a reload, then the other way.
  await wendy.goto(teamUrl);
  await wendy.click(link('Forum'));
  await wendy.click(link('New topic'));
  await wendy.fill(field('Title'), 'Browser notes');
  await wendy.fill('//*[@id="body"]', 'Written in **WebKit**.');
  await wendy.click(button('Post topic'));
  await wendy.waitFor('the topic', hasHeading, ['Browser notes']);
  check(await wendy.run(() => document.querySelectorAll('.prose strong').length) === 1, 'markdown rendered in WebKit');
  const topicUrl = await wendy.url();
  await wendy.run(() => { window.__notReloaded = true; });

  await chris.goto(topicUrl);
  await chris.locator('#comment-body').fill('Hello from Chromium');
  await chris.getByRole('button', { name: 'Send' }).click();
  await wendy.waitFor("Chris's comment, live", hasComment, ['Hello from Chromium'], 10000);
  await wendy.fill('//*[@id="comment-body"]', 'Hello from WebKit');
  await wendy.click(button('Send'));
  await chris.locator('#comments .comment', { hasText: 'Hello from WebKit' }).waitFor({ timeout: 10000 });
  await wendy.waitFor('her own comment', hasComment, ['Hello from WebKit']);
  check(await wendy.run(() => window.__notReloaded === true) && await wendy.url() === topicUrl, 'WebKit did not reload the topic');
  check(await chris.locator('#comments .comment').count() === 2, 'two comments for Chris, no duplicates');
  check(await wendy.run(() => document.querySelectorAll('#comments .comment').length) === 2, 'two comments for Wendy, no duplicates');
  await wendy.shot('02-webkit-topic');
  await shot(chris, artifacts, '03-chromium-topic');

  // Wendy starts a meeting: the lobby shows her camera and her microphone's level.
  await wendy.goto(teamUrl);
  await wendy.fill(field('Title'), 'Cross-engine call');
  await wendy.click(button('Start meeting'));
  await wendy.waitFor('the lobby', () => !!document.getElementById('preview'));
  const meetingUrl = await wendy.url();
  const preview = await wendy.waitFor('the camera preview', () => {
    const v = document.getElementById('preview');
    return v.videoWidth > 0 && !v.paused && [v.videoWidth, v.videoHeight];
  });
  const level = await wendy.waitFor('the microphone meter to move', () => {
    const value = document.getElementById('mic-level').value;
    return value > 0 && value;
  });
  const devices = await wendy.waitFor('the device lists', () => {
    const names = (id) => [...document.getElementById(id).options].map((o) => o.textContent);
    return document.getElementById('camera-select').options.length && { cameras: names('camera-select'), microphones: names('mic-select') };
  });
  const support = await wendy.run(() => { const p = document.getElementById('call-support'); return p.hidden ? null : p.textContent; });
  check(support === null, `the lobby offers the call in WebKit (it said: ${support})`);
  await wendy.shot('04-webkit-lobby');

  // Both join: Wendy over the WebSocket (Safari's path; WebKitGTK has no WebTransport),
  // with her camera and microphone; each decodes the other's camera and voice.
  await wendy.click('//*[@id="join-call"]');
  await wendy.waitFor('Wendy in the call', () => window.__floo?.stats.joinedAt > 0);
  await chris.goto(meetingUrl);
  await joinCall(chris);
  await chris.waitForFunction(() => window.__floo.stats.joinedAt > 0, null, { timeout: 15000 });

  /** Decoded from the one other participant: `frames` pictures, and `voice` Opus frames that are not silence. */
  const decodes = ({ frames, voice }) => {
    const f = window.__floo;
    const [id] = f.call.participants.keys();
    return f.call.participants.size === 1 && (f.stats.decodedFrames[id] || 0) >= frames && (f.stats.decoded[id] || 0) >= 10
      && (!voice || ((f.stats.audio[id] || 0) >= voice && (f.stats.loudest[id] || 0) > 0.01));
  };
  const received = () => {
    const f = window.__floo;
    return [...f.call.participants.entries()].map(([id, p]) => ({
      name: p.name, transport: p.transport, video: f.stats.decodedFrames[id] || 0, painted: f.stats.decoded[id] || 0,
      size: f.stats.sizes[id], audio: f.stats.audio[id] || 0, loudest: Number((f.stats.loudest[id] || 0).toFixed(3)),
    }));
  };
  await wendy.waitFor("Chris's video and voice in WebKit", decodes, [{ frames: 30, voice: 50 }], 40000);
  await chris.waitForFunction(decodes, { frames: 30, voice: 50 }, { timeout: 40000 })
    .catch(async (e) => { throw new Error(`Chris does not see and hear Wendy: ${JSON.stringify(await chris.evaluate(received))} (${e.message})`); });
  const inWebKit = await wendy.run(received);
  const inChromium = await chris.evaluate(received);
  const wendyStats = await wendy.run(() => {
    const s = window.__floo.stats;
    return { transport: s.transport, capture: s.capture, problems: s.problems, closes: s.closes, sent: s.sent };
  });
  check(wendyStats.transport === 'websocket' && wendyStats.capture === 'element',
    `WebKit over the WebSocket, capturing through <video> and AudioWorklet: ${JSON.stringify(wendyStats)}`);
  check(wendyStats.problems.length === 0 && wendyStats.closes.length === 0, `WebKit's call had no problems: ${JSON.stringify(wendyStats)}`);
  check(inChromium[0].name === 'Wendy' && inChromium[0].transport === 'websocket', `Chromium sees Wendy over the WebSocket: ${JSON.stringify(inChromium)}`);
  check(inWebKit[0].name === 'Chris' && inWebKit[0].size?.[0] >= 320, `WebKit decodes Chris's camera: ${JSON.stringify(inWebKit)}`);
  // What each page paints in the other's tile: Chromium's fake camera is green; WebKit's
  // mock camera draws white and coloured marks on black. WebKitGTK 2.50 now and then paints
  // a VideoFrame on a canvas as another picture drawn shortly before, or black (PROTOCOL.md,
  // "WebKitGTK"): WebKit's tile of Chris may show Wendy's camera, and as Floo scales each
  // camera picture on a canvas before encoding it, what Wendy sends may be Chris's picture.
  // So each tile must show the right camera at times (sampled ten times for the log, then
  // waited for), not every time.
  const tileLooks = ({ name, wanted }) => {
    const tile = [...document.querySelectorAll('#grid .tile:not(.self)')].find((t) => t.textContent.includes(name));
    const canvas = tile?.querySelector('canvas');
    if (!canvas) return null;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let green = 0, bright = 0, n = 0;
    for (let i = 0; i < data.length; i += 4 * 97) {
      n += 1;
      if (data[i + 1] > 100 && data[i] < 80 && data[i + 2] < 80) green += 1;
      if (data[i] > 200 && data[i + 1] > 200 && data[i + 2] > 200) bright += 1;
    }
    const look = green / n > 0.5 ? 'green' : bright > 0 ? 'pattern' : 'dark';
    return wanted ? look === wanted : look;
  };
  const webkitSees = [];
  const chromiumSees = [];
  for (let i = 0; i < 10; i++) {
    webkitSees.push(await wendy.run(tileLooks, { name: 'Chris' }));
    chromiumSees.push(await chris.evaluate(tileLooks, { name: 'Wendy' }));
    await pause(100);
  }
  await wendy.waitFor("Chris's camera painted in WebKit", tileLooks, [{ name: 'Chris', wanted: 'green' }], 20000);
  await chris.waitForFunction(tileLooks, { name: 'Wendy', wanted: 'pattern' }, { timeout: 20000 });
  await wendy.shot('05-webkit-call');
  await shot(chris, artifacts, '06-chromium-call');

  // Both leave, so that the call is over when the next walk starts.
  await wendy.click('//*[@id="leave-call"]');
  await wendy.waitFor('the lobby again', () => !document.getElementById('lobby').hidden);
  await chris.getByRole('button', { name: 'Leave call' }).click();
  await chris.locator('#lobby').waitFor({ state: 'visible', timeout: 10000 });
  await wendy.checkErrors();
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`webkit walk: ok in ${seconds} s; ${version}; preview ${preview.join('x')}, mic level ${level.toFixed(2)}, devices ${JSON.stringify(devices)}; `
    + `WebKit decoded ${JSON.stringify(inWebKit)}, Chromium decoded ${JSON.stringify(inChromium)}; WebKit sent ${JSON.stringify(wendyStats.sent)}; `
    + `Chris's tile in WebKit ${webkitSees.join(',')}; Wendy's tile in Chromium ${chromiumSees.join(',')}`);
} catch (e) {
  await wendy.shot('FAILED-webkit').catch(() => {});
  if (chris) await shot(chris, artifacts, 'FAILED-chromium').catch(() => {});
  const said = await wendy.run(() => JSON.stringify(window.__floo?.stats)).catch((err) => `no answer (${err.message})`);
  console.error(`WebKit page at ${await wendy.url().catch(() => '?')}: ${said}\nWebKit script errors: ${wendy.errors.join('; ')}\nWebKit's log (end): ${driver.log().slice(-3000)}`);
  throw e;
} finally {
  await wendy.close();
  await chrome.close();
  driver.stop();
  xvfb.stop();
  rmSync(runtime, { recursive: true, force: true });
}
