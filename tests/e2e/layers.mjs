// The layer each tile needs, in a call of five: Alice sees four small tiles (three
// columns) and receives everyone's small camera layer; she pins Bob, whose tile grows,
// and she receives his large layer (and paints 640×360 pictures of him) while the others
// stay small; unpinning sends him back to the small layer. The speaker view gives its
// main tile the large layer too.
import { args, withBrowser, teamWith, startMeeting, joinCall, shot, check } from './lib.mjs';

const { base, artifacts } = args();

/** The camera layer Alice receives of each person, and the speaker view's main tile. */
const state = (page) => page.evaluate(() => {
  const f = window.__floo;
  const main = document.querySelector('#grid .tile.main');
  return {
    layers: Object.fromEntries([...f.call.participants.entries()].map(([id, p]) => [p.name, f.stats.layers[id]])),
    widths: Object.fromEntries([...f.call.participants.entries()].map(([id, p]) => [p.name, f.stats.sizes[id]?.[0]])),
    mainLayer: main ? f.stats.layers[Number(main.dataset.participant)] : undefined,
    large: Object.values(f.stats.layers).filter((l) => l === 1).length,
    // A link the relay had to drop groups on keeps every camera small for 15 s
    // (call.js `wantsLarge`), which is right on a loaded machine.
    calmFor: performance.now() - Math.max(f.call.congestedAt ?? -1e9, 0) - 15000,
    downs: f.stats.layerDowns || 0,
  };
});

/**
 * Waits until `ok(state)`: 15 s, counted from when Alice's link is calm again if the
 * relay had to drop groups on it meanwhile; the error says what she receives.
 */
const until = async (page, ok, what) => {
  const started = Date.now();
  for (;;) {
    const now = await state(page);
    if (ok(now)) return now;
    const waited = Math.min(Date.now() - started, now.calmFor);
    if (waited > 15000 || Date.now() - started > 90000) {
      throw new Error(`${what}: Alice receives ${JSON.stringify(now.layers)} (her link was congested ${now.downs} times)`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};

const waitForLayers = (page, want) => until(page,
  (now) => Object.entries(want).every(([name, layer]) => now.layers[name] === layer), `want ${JSON.stringify(want)}`);

await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members } = await teamWith(browser, base, 'Five of us', 'Alice', ['Bob', 'Carol', 'Dave', 'Erin']);
  const meeting = await startMeeting(alice, 'Stand-up');
  for (const page of [alice, ...members]) {
    if (page !== alice) await page.goto(base + meeting);
    // Everyone joins muted: this walk is about video, and five voices each played out on
    // five pages are what kept two cores too busy for any link to stay calm.
    await page.locator('#join-muted').check();
    await joinCall(page);
  }
  await alice.waitForFunction(() => window.__floo.call.participants.size === 4, null, { timeout: 20000 });
  const small = { Bob: 0, Carol: 0, Dave: 0, Erin: 0 };
  await waitForLayers(alice, small);
  await shot(alice, artifacts, '01-five-small-tiles');

  // Pinning Bob gives his tile two columns and him the large layer.
  await alice.locator('#grid .tile', { hasText: 'Bob' }).hover();
  await alice.locator('#grid .tile', { hasText: 'Bob' }).getByRole('button', { name: 'Pin' }).click();
  await waitForLayers(alice, { ...small, Bob: 1 });
  const pinned = await until(alice, (now) => now.widths.Bob === 640 && now.layers.Bob === 1, 'Bob painted at 640 px');
  check(JSON.stringify(pinned.layers) === JSON.stringify({ ...small, Bob: 1 }), `only Bob large: ${JSON.stringify(pinned.layers)}`);
  await shot(alice, artifacts, '02-bob-pinned');

  // Unpinned, he goes back to the small layer with the others.
  await alice.locator('#grid .tile', { hasText: 'Bob' }).getByRole('button', { name: 'Unpin' }).click();
  await waitForLayers(alice, small);
  await until(alice, (now) => now.widths.Bob === 320, 'Bob painted at 320 px again');

  // The speaker view: one main tile, in the large layer; the strip stays small.
  await alice.getByRole('button', { name: 'Speaker view' }).click();
  await until(alice, (now) => now.mainLayer === 1 && now.large === 1, 'the main tile large, the strip small');
  await shot(alice, artifacts, '03-speaker-view');
  await alice.getByRole('button', { name: 'Grid view' }).click();
  await waitForLayers(alice, small);
  console.log('layers browser walk: ok');
}, { fps: 5 }); // five pages each encoding two layers and decoding four, on two cores
