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

  // Each connection's figures: Alice sends, Bob receives, both over WebTransport.
  const rows = async () => olga.evaluate(() => Object.fromEntries([...document.querySelectorAll('.ops-table.small tbody tr')]
    .map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim()))
    .map(([who, browser, transport, kin, kout, rtt, dropped]) => [who, { browser, transport, kin: Number(kin), kout: Number(kout), rtt, dropped }])));
  let connections = await rows();
  for (let i = 0; i < 20 && !(connections.Alice?.kin > 0 && connections.Bob?.kout > 0); i++) {
    await olga.waitForTimeout(1000);
    connections = await rows();
  }
  check(connections.Alice?.transport === 'WebTransport' && connections.Bob?.transport === 'WebTransport',
    `both connections listed with their transport: ${JSON.stringify(connections)}`);
  check(connections.Alice.kin > 0 && connections.Bob.kout > 0, `Alice's media in, Bob's out: ${JSON.stringify(connections)}`);

  // The call's own page: each connection's figures over time.
  await olga.getByRole('link', { name: 'Figures over time' }).click();
  await olga.getByRole('heading', { name: 'Alice' }).waitFor();
  await olga.getByRole('heading', { name: 'Bob' }).waitFor();
  const plots = await olga.locator('.ops-plot').count();
  check(plots === 6, `three plots for each of two connections: ${plots}`);
  const aliceIn = await olga.locator('section', { has: olga.getByRole('heading', { name: 'Alice' }) })
    .locator('figcaption', { hasText: 'In (kbit/s)' }).textContent();
  check(!/: 0 /.test(aliceIn), `Alice's media in over time: ${aliceIn}`);
  await shot(olga, artifacts, '02-call-figures');
  console.log(`dashboard walk: ok; ${JSON.stringify(figures)}; ${relayIn}; ${JSON.stringify(connections)}; ${aliceIn}`);
});
