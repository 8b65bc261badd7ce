// A slow link: in the middle of a call with Alice and Carol, Bob's downlink is cut to
// 500 kbit/s with a router queue of about a second (Linux traffic control on loopback,
// for his connection's UDP port only: the relay cannot tell this from a real thin pipe).
// Two large camera layers do not fit through it, two small ones do. The relay gives up
// the groups he cannot take in time, his client switches to the smaller layers and keeps
// a moving picture, and Carol, on a good link, keeps receiving Alice's large layer at
// full rate.
// Needs root (tc); ops/test runs as root or through sudo.
import { execFileSync } from 'node:child_process';
import { args, withBrowser, teamWith, shot, check } from './lib.mjs';

const { base, artifacts } = args();

/** Local UDP ports of the sockets talking to the relay on `port`. */
const relaySockets = (port) => new Set(
  execFileSync('ss', ['-uanH']).toString().split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 5 && cols[4] === `127.0.0.1:${port}`)
    .map((cols) => cols[3].split(':').pop()),
);

// Shaping traffic needs root: as root directly, else through sudo (which must not ask).
const tc = (...a) => (process.getuid() === 0
  ? execFileSync('tc', a, { stdio: 'pipe' })
  : execFileSync('sudo', ['-n', 'tc', ...a], { stdio: 'pipe' }));
await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members: [bob, carol] } = await teamWith(browser, base, 'Far team', 'Alice', ['Bob', 'Carol']);
  await alice.getByLabel('Title').fill('Thin pipe');
  await alice.getByRole('button', { name: 'Start meeting' }).click();
  await alice.locator('#call').waitFor();
  await bob.goto(alice.url());
  const join = async (page) => {
    await page.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
    await page.getByRole('button', { name: 'Join call' }).click();
    await page.waitForFunction(() => window.__floo.stats.relayPort > 0, null, { timeout: 15000 });
  };
  await join(alice);
  const port = await alice.evaluate(() => window.__floo.stats.relayPort);
  const alicesSockets = relaySockets(port);
  await join(bob);
  await bob.waitForFunction(() => window.__floo.call.participants.size === 1, null, { timeout: 15000 });
  const bobs = [...relaySockets(port)].filter((p) => !alicesSockets.has(p));
  check(bobs.length === 1, `found Bob's connection (${bobs}; Alice's ${[...alicesSockets]})`);
  await carol.goto(alice.url());
  await join(carol);
  const aliceId = await alice.evaluate(() => window.__floo.call.you.userId);
  /** Frames decoded, and the last size, of Alice's camera as `page` sees it. */
  const ofAlice = (page) => page.evaluate((id) => {
    const f = window.__floo;
    const participant = [...f.call.participants.entries()].find(([, p]) => p.userId === id || p.user_id === id)?.[0];
    return { n: f.stats.decoded[participant] || 0, size: f.stats.sizes[participant] || [0, 0] };
  }, aliceId);
  for (const page of [bob, carol]) {
    await page.waitForFunction(() => Object.values(window.__floo.stats.decoded).filter((n) => n > 10).length === 2, null, { timeout: 20000 });
  }
  // Everyone on the large layer first (a client that stepped down while three browsers
  // started on two cores comes back up within about 16 s).
  for (const page of [bob, carol]) {
    for (let i = 0; i < 50 && (await ofAlice(page)).size[0] !== 640; i++) await page.waitForTimeout(500);
    const { size } = await ofAlice(page);
    check(size[0] === 640, `Alice's large layer at first (${size})`);
  }

  /** What a client heard of given-up groups: the relay's `dropped` messages, reset codes, its own steps down. */
  const losses = (page) => page.evaluate(() => {
    const st = window.__floo.stats;
    return { dropped: st.dropped || 0, resets: { ...st.resets }, layerDowns: st.layerDowns || 0 };
  });
  const carolBefore = await losses(carol);
  // Carol's frame rate of Alice before anything is cut: what "not slowed" is measured
  // against (the machine's own speed varies from run to run).
  const cb0 = await ofAlice(carol);
  await carol.waitForTimeout(3000);
  const baseline = (await ofAlice(carol)).n - cb0.n;
  try {
    tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10');
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit');
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '500kbit', 'ceil', '500kbit');
    // A router's queue, not an endless one: about a second at this rate.
    tc('qdisc', 'add', 'dev', 'lo', 'parent', '1:20', 'handle', '20:', 'pfifo', 'limit', '40');
    tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
      'match', 'ip', 'dport', bobs[0], '0xffff', 'flowid', '1:20');
    const t0 = Date.now();
    await bob.waitForFunction(() => (window.__floo.stats.layerDowns || 0) >= 1, null, { timeout: 30000 });
    console.log(`Bob switched down ${Date.now() - t0} ms after his link was cut`);
    await bob.locator('#call-status', { hasText: 'Your connection is slow' }).waitFor({ timeout: 5000 });
    for (let i = 0; i < 30 && (await ofAlice(bob)).size[0] !== 320; i++) await bob.waitForTimeout(500);
    check((await ofAlice(bob)).size[0] === 320, `Bob gets Alice's small layer (${(await ofAlice(bob)).size})`);
    const [b0, c0] = [await ofAlice(bob), await ofAlice(carol)];
    await bob.waitForTimeout(3000);
    const [b1, c1] = [await ofAlice(bob), await ofAlice(carol)];
    console.log(`over 3 s: Bob decoded ${b1.n - b0.n} frames of Alice at ${b1.size}, Carol ${c1.n - c0.n} at ${c1.size}`);
    check(b1.n - b0.n >= 15, `Bob's picture of Alice keeps moving on the small layer (${b1.n - b0.n} frames in 3 s)`);
    // Bob's uplink shares his thin pipe with the acknowledgements of what he sends, so his
    // groups reach the relay late and are given up on their way to Carol too, but as late
    // at their source (reset code 0x41): only Bob is told `dropped`, so Carol stays on
    // Alice's large layer.
    const [bobL, carolL] = [await losses(bob), await losses(carol)];
    console.log(`given-up groups: Bob ${JSON.stringify(bobL)}, Carol before ${JSON.stringify(carolBefore)}, after ${JSON.stringify(carolL)}`);
    check(bobL.dropped >= 2, `Bob's client was told its link was too slow (${JSON.stringify(bobL)})`);
    // (One dropped group is tolerated: three browsers share two cores here, and a starved
    // one can be late to acknowledge; one is not enough to make a client step down.)
    check(carolL.layerDowns === carolBefore.layerDowns && carolL.dropped - carolBefore.dropped <= 1,
      `Carol was not told her link was slow (${JSON.stringify(carolBefore)} -> ${JSON.stringify(carolL)})`);
    check(c1.size[0] === 640, `Carol keeps Alice's large layer (${c1.size})`);
    check(c1.n - c0.n >= Math.max(15, baseline * 0.7),
      `Carol's picture of Alice is not slowed by Bob's link (${c1.n - c0.n} frames in 3 s at ${c1.size}; ${baseline} before the cut)`);
    await shot(bob, artifacts, '01-slow-link');
  } finally {
    try { tc('qdisc', 'del', 'dev', 'lo', 'root'); } catch (e) { /* already gone */ }
  }
  console.log('slow link browser walk: ok');
});
