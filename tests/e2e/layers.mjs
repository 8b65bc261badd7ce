// The layer each tile needs, in a call of five: Alice sees four small tiles (three
// columns) and receives everyone's small camera layer; she pins Bob, whose tile grows,
// and she receives his large layer (and paints 640×360 pictures of him) while the others
// stay small; unpinning sends him back to the small layer. The speaker view gives its
// main tile the large layer too.
import { args, withBrowser, teamWith, shot, check } from './lib.mjs';

const { base, artifacts } = args();

/** The camera layer Alice receives of each person, by name. */
const layers = (page) => page.evaluate(() => {
  const f = window.__floo;
  return Object.fromEntries([...f.call.participants.entries()].map(([id, p]) => [p.name, f.stats.layers[id]]));
});

const waitForLayers = (page, want) => page.waitForFunction((want) => {
  const f = window.__floo;
  const now = Object.fromEntries([...f.call.participants.entries()].map(([id, p]) => [p.name, f.stats.layers[id]]));
  return Object.entries(want).every(([name, layer]) => now[name] === layer);
}, want, { timeout: 15000 });

await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members } = await teamWith(browser, base, 'Five of us', 'Alice', ['Bob', 'Carol', 'Dave', 'Erin']);
  await alice.getByLabel('Title').fill('Stand-up');
  await alice.getByRole('button', { name: 'Start meeting' }).click();
  await alice.locator('#call').waitFor();
  const meetingUrl = alice.url();
  for (const page of [alice, ...members]) {
    if (page !== alice) await page.goto(meetingUrl);
    await page.waitForFunction(() => document.getElementById('preview').videoWidth > 0, null, { timeout: 15000 });
    await page.getByRole('button', { name: 'Join call' }).click();
  }
  await alice.waitForFunction(() => window.__floo.call.participants.size === 4, null, { timeout: 20000 });
  const small = { Bob: 0, Carol: 0, Dave: 0, Erin: 0 };
  await waitForLayers(alice, small);
  await shot(alice, artifacts, '01-five-small-tiles');

  // Pinning Bob gives his tile two columns and him the large layer.
  await alice.locator('#grid .tile', { hasText: 'Bob' }).hover();
  await alice.locator('#grid .tile', { hasText: 'Bob' }).getByRole('button', { name: 'Pin' }).click();
  await waitForLayers(alice, { ...small, Bob: 1 });
  const bobId = await alice.evaluate(() => [...window.__floo.call.participants.entries()].find(([, p]) => p.name === 'Bob')[0]);
  await alice.waitForFunction((id) => window.__floo.stats.sizes[id]?.[0] === 640, bobId, { timeout: 15000 });
  check(JSON.stringify(await layers(alice)) === JSON.stringify({ ...small, Bob: 1 }), `only Bob large: ${JSON.stringify(await layers(alice))}`);
  await shot(alice, artifacts, '02-bob-pinned');

  // Unpinned, he goes back to the small layer with the others.
  await alice.locator('#grid .tile', { hasText: 'Bob' }).getByRole('button', { name: 'Unpin' }).click();
  await waitForLayers(alice, small);
  await alice.waitForFunction((id) => window.__floo.stats.sizes[id]?.[0] === 320, bobId, { timeout: 15000 });

  // The speaker view: one main tile, in the large layer; the strip stays small.
  await alice.getByRole('button', { name: 'Speaker view' }).click();
  await alice.waitForFunction(() => {
    const f = window.__floo;
    const main = document.querySelector('#grid .tile.main');
    return main && f.stats.layers[Number(main.dataset.participant)] === 1
      && Object.values(f.stats.layers).filter((l) => l === 1).length === 1;
  }, null, { timeout: 15000 });
  await shot(alice, artifacts, '03-speaker-view');
  await alice.getByRole('button', { name: 'Grid view' }).click();
  await waitForLayers(alice, small);
  console.log('layers browser walk: ok');
});
