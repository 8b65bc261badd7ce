// A network that blocks UDP: Dave's browser reaches Floo at 127.0.0.2, and every UDP
// packet to that address is dropped by Linux traffic control on loopback (an htb class
// whose queue holds nothing), as a company firewall would. Alice, on 127.0.0.1 (via
// `localhost`), joins over WebTransport. Dave's client gives WebTransport its head start,
// races the WebSocket against it, and joins through the WebSocket on the HTTP port by
// itself; the two decode each other's video and audio, and Alice's roster shows Dave on
// the fallback. Then Dave's TCP connections are cut (`ss -K`, as a network drop would):
// his client reconnects by itself and the call goes on.
// Needs root (tc, ss -K); ops/test runs as root or through sudo.
import { execFileSync } from 'node:child_process';
import { args, launch, signIn, createTeam, startMeeting, joinTeam, joinCall, shot, check } from './lib.mjs';

const { base, artifacts } = args();
const { port } = new URL(base);
const blockedBase = base.replace('//localhost', '//127.0.0.2');
check(blockedBase !== base, `the app is served at localhost (${base})`);
const asRoot = (cmd, ...a) => (process.getuid() === 0
  ? execFileSync(cmd, a, { stdio: 'pipe' })
  : execFileSync('sudo', ['-n', cmd, ...a], { stdio: 'pipe' }));

const decodedFromAll = (page, min) => page.waitForFunction((n) => {
  const f = window.__floo;
  return f.call.participants.size > 0 && [...f.call.participants.keys()]
    .every((id) => (f.stats.decoded[id] || 0) >= n && (f.stats.audio[id] || 0) >= n);
}, min, { timeout: 30000 });

const join = async (page) => {
  await joinCall(page);
  await page.waitForFunction(() => window.__floo.stats.joinedAt > 0, null, { timeout: 20000 });
};

const browser = await launch();
try {
  try { asRoot('tc', 'qdisc', 'del', 'dev', 'lo', 'root'); } catch (e) { /* none left by an earlier run */ }
  asRoot('tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10');
  asRoot('tc', 'class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit');
  asRoot('tc', 'class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '1mbit');
  asRoot('tc', 'qdisc', 'add', 'dev', 'lo', 'parent', '1:20', 'handle', '20:', 'pfifo', 'limit', '0');
  asRoot('tc', 'filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
    'match', 'ip', 'dst', '127.0.0.2/32', 'match', 'ip', 'protocol', '17', '0xff', 'flowid', '1:20');

  const alice = await signIn(browser, base, 'Alice');
  const { invite } = await createTeam(alice, 'Behind firewalls');
  const meetingPath = await startMeeting(alice, 'No UDP here');
  await join(alice);

  const dave = await signIn(browser, blockedBase, 'Dave');
  await joinTeam(dave, blockedBase, invite, 'Behind firewalls');
  await dave.goto(blockedBase + meetingPath);
  await join(dave);
  const [aliceJoin, daveJoin] = await Promise.all([alice, dave].map((p) => p.evaluate(() => ({
    transport: window.__floo.stats.transport, ms: window.__floo.stats.connectMs, attempts: window.__floo.stats.attempts,
  }))));
  console.log(`Alice joined over ${aliceJoin.transport} in ${aliceJoin.ms} ms; Dave over ${daveJoin.transport} in ${daveJoin.ms} ms: ${JSON.stringify(daveJoin.attempts)}`);
  check(aliceJoin.transport === 'webtransport', `Alice, on an open network, uses WebTransport (${aliceJoin.transport})`);
  check(daveJoin.transport === 'websocket', `Dave, with UDP blocked, falls back to the WebSocket (${daveJoin.transport})`);
  // The race did it, not a timeout: WebTransport was still trying when the WebSocket won.
  const outcome = (kind) => daveJoin.attempts.filter((a) => a.kind === kind).map((a) => a.outcome);
  check(JSON.stringify(outcome('webtransport')) === '["started","abandoned"]' && JSON.stringify(outcome('websocket')) === '["started","won"]',
    `WebTransport first, then the WebSocket raced and won: ${JSON.stringify(daveJoin.attempts)}`);

  for (const page of [alice, dave]) await decodedFromAll(page, 30);
  const roster = await alice.locator('#roster').textContent();
  check(roster.includes('Dave (WebSocket)'), `Alice's roster shows Dave on the fallback: ${roster}`);
  check((await dave.locator('#roster').textContent()).includes('connected over WebSocket'), 'Dave is told how he is connected');
  await shot(alice, artifacts, '01-alice-sees-dave');
  await shot(dave, artifacts, '02-dave-over-websocket');

  // Dave's network drops his TCP connections: his client comes back by itself.
  const before = await dave.evaluate(() => window.__floo.stats.reconnects);
  // Reset from the server's end (the browser then sees a connection reset, as from a
  // middlebox).
  asRoot('ss', '-K', 'state', 'established', 'src', '127.0.0.2', 'sport', '=', port);
  await dave.waitForFunction((n) => window.__floo.stats.reconnects > n, before, { timeout: 20000 });
  const after = await dave.evaluate(() => ({ transport: window.__floo.stats.transport, closes: window.__floo.stats.closes }));
  check(after.transport === 'websocket', `Dave reconnected over the WebSocket (${after.transport})`);
  for (const page of [alice, dave]) await page.evaluate(() => { window.__floo.stats.decoded = {}; window.__floo.stats.audio = {}; });
  for (const page of [alice, dave]) await decodedFromAll(page, 20);
  await shot(dave, artifacts, '03-dave-after-reconnect');
  console.log(`UDP-blocked browser walk: ok (Dave's connection closed ${JSON.stringify(after.closes)} and came back)`);
} finally {
  try { asRoot('tc', 'qdisc', 'del', 'dev', 'lo', 'root'); } catch (e) { /* already gone */ }
  await browser.close();
}
