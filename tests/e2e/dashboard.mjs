// The ops dashboard as an admin sees it during a call (Olga, made an admin by the Rust
// side with `floo admin grant`; Alice and Bob are in the call as Rust clients): this
// node's figures, the plots of the last hour with data in them, and the live meeting with
// who is in it.
import { args, check, shot, signIn, withBrowser } from './lib.mjs';

const { base, artifacts } = args();

await withBrowser(artifacts, async (browser) => {
  const olga = await signIn(browser, base, 'Olga');
  await olga.goto(`${base}/ops`);
  await olga.getByRole('heading', { name: 'Operations' }).waitFor();
  await olga.locator('td', { hasText: 'Alice, Bob' }).waitFor({ timeout: 10000 });
  // The plots fill in over the live stream (a sample every 5 s).
  await olga.waitForFunction(() => {
    const lines = [...document.querySelectorAll('.ops-plot polyline')];
    return lines.length >= 4 && lines.every((l) => l.getAttribute('points').split(' ').length >= 3);
  }, null, { timeout: 40000 });
  const figures = await olga.evaluate(() => Object.fromEntries([...document.querySelectorAll('.ops-figures div')]
    .map((d) => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])));
  check(figures['People in calls'] === '2', `two people in calls: ${JSON.stringify(figures)}`);
  const relayIn = await olga.locator('.ops-plot figcaption', { hasText: 'Relay in' }).textContent();
  check(!/: 0 /.test(relayIn), `the relay receives media: ${relayIn}`);
  await shot(olga, artifacts, '01-dashboard');
  console.log(`dashboard walk: ok; ${JSON.stringify(figures)}; ${relayIn}`);
});
