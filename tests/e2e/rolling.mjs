// A rolling restart seen from the participants' seats: Alice, Bob and Carol are in a call
// through Caddy in front of two nodes (tests/it/nodes.rs starts them). The test stops each
// node in turn with SIGTERM and starts it again while the three keep chatting; here each
// participant measures the longest time without a new picture and without a new voice
// frame from each of the others, from the moment the node is told to stop until everyone
// is back. Every message sent is on every page afterwards, once.
import { args, withBrowser, teamWith, startMeeting, joinCall, shot, check, ask } from './lib.mjs';

const { base, artifacts } = args();
const NAMES = ['Alice', 'Bob', 'Carol'];

// In the page: the time of the latest picture and voice frame decoded from each person
// (by name: a reconnected person comes back under a new id), and the longest wait
// between two since the last reset.
function installGapMeter() {
  const { stats, call } = window.__floo;
  // What the page's live streams went through (for a failure's report).
  window.__sse = [];
  for (const type of ['htmx:sseOpen', 'htmx:sseError', 'htmx:sseClose']) {
    document.body.addEventListener(type, (e) => window.__sse.push(`${Math.round(performance.now())} ${type.slice(8)} ${e.detail?.source?.url?.split('/').slice(-2).join('/') ?? ''} ${e.detail?.source?.readyState ?? ''}`));
  }
  const m = { since: performance.now(), counts: {}, last: {}, longest: {} };
  const nameOf = (id) => (call.participants.get(id) || call.participants.get(Number(id)))?.name;
  setInterval(() => {
    const now = performance.now();
    for (const [kind, counts] of [['video', stats.decoded], ['audio', stats.audio]]) {
      for (const [id, n] of Object.entries(counts)) {
        const key = `${kind}:${id}`;
        if (m.counts[key] === n) continue;
        m.counts[key] = n;
        const name = nameOf(id);
        if (!name) continue;
        const k = `${kind}:${name}`;
        m.longest[k] = Math.max(m.longest[k] || 0, now - (m.last[k] ?? m.since));
        m.last[k] = now;
      }
    }
  }, 20);
  window.__gaps = {
    reset() {
      m.since = performance.now();
      for (const k of Object.keys(m.last)) m.last[k] = m.since;
      m.longest = {};
    },
    // Longest gap per kind:name so far, counting the one still open.
    read() {
      const now = performance.now();
      return Object.fromEntries(Object.keys(m.last).map((k) => [k, Math.round(Math.max(m.longest[k] || 0, now - m.last[k]))]));
    },
    // Whether pictures and voice came from each of `names` within the last `ms`.
    flowing(names, ms) {
      const now = performance.now();
      return names.every((n) => ['video', 'audio'].every((kind) => now - (m.last[`${kind}:${n}`] ?? -1e9) < ms));
    },
  };
}

const others = (name) => NAMES.filter((n) => n !== name);

await withBrowser(artifacts, async (browser) => {
  const { owner: alice, members } = await teamWith(browser, base, 'Rolling', 'Alice', ['Bob', 'Carol']);
  const pages = [alice, ...members];
  const meeting = await startMeeting(alice, 'Deploy day');
  for (const page of pages) {
    if (page !== alice) await page.goto(base + meeting);
    await joinCall(page);
  }
  for (const page of pages) await page.evaluate(installGapMeter);
  const allFlowing = async (what, timeout) => {
    for (const [i, page] of pages.entries()) {
      await page.waitForFunction((names) => window.__gaps.flowing(names, 500), others(NAMES[i]), { timeout })
        .catch(async () => {
          throw new Error(`${what}: ${NAMES[i]} does not see and hear both others: ${JSON.stringify(await page.evaluate(() => window.__gaps.read()))}; closes ${JSON.stringify(await page.evaluate(() => window.__floo.stats.closes))}`);
        });
    }
  };
  await allFlowing('at the start', 20000);
  await shot(alice, artifacts, '01-before');

  // The steady call: what a gap looks like with nothing going on, for comparison.
  for (const page of pages) await page.evaluate(() => window.__gaps.reset());
  await alice.waitForTimeout(5000);
  const steady = await Promise.all(pages.map((page) => page.evaluate(() => window.__gaps.read())));
  const worst = (gaps, kind) => Math.max(...gaps.flatMap((g) => Object.entries(g).filter(([k]) => k.startsWith(kind)).map(([, v]) => v)));
  console.log(`steady call: longest video gap ${worst(steady, 'video')} ms, audio ${worst(steady, 'audio')} ms`);

  // Chat the whole time, as people do: a message every 700 ms from each in turn; one that
  // did not go through (the form says "Not sent") is sent again, as a person would.
  const sent = [];
  let chatting = false;
  let asked = Date.now();
  const chat = async (label) => {
    let i = 0;
    while (chatting) {
      const page = pages[i % pages.length];
      const text = `${NAMES[i % pages.length]} says ${label} (${i})`;
      i += 1;
      const box = page.locator('#comment-body');
      await box.fill(text);
      for (let attempt = 1; ; attempt += 1) {
        await page.locator('#comment-form').getByRole('button', { name: 'Send' }).click();
        const outcome = await page.waitForFunction(() => {
          if (document.querySelector('#comment-form .not-sent')) return 'not sent';
          return document.getElementById('comment-body')?.value === '' ? 'sent' : false;
        }, null, { timeout: 15000 }).then((h) => h.jsonValue())
          .catch((e) => { throw new Error(`"${text}" (attempt ${attempt}) was neither sent nor refused within 15 s, ${Date.now() - asked} ms after the restart was asked: ${e.message}`); });
        if (outcome === 'sent') break;
        check(attempt < 20, `"${text}" could not be sent in 20 tries`);
        await page.waitForTimeout(500);
      }
      sent.push(text);
      await page.waitForTimeout(700);
    }
  };

  const ports = async () => Promise.all(pages.map((page) => page.evaluate(() => window.__floo.stats.relayPort)));
  const hostedAt = [await ports()];
  let handedOver = 0;
  for (const node of [1, 2]) {
    for (const page of pages) await page.evaluate(() => window.__gaps.reset());
    chatting = true;
    asked = Date.now();
    const chatter = chat(`while node ${node} restarts`);
    chatter.catch(() => {}); // awaited below; a failure is reported there
    const started = Date.now();
    const before = await ports();
    const reconnects = await Promise.all(pages.map((page) => page.evaluate(() => window.__floo.stats.reconnects)));
    const reply = await ask(`restart ${node}`);
    const [, , drainMs, awayMs, quicPort] = reply.split(' ');
    // Everyone back: if the call was on that node, everyone reconnected (to whichever node
    // hosts it now: the restarted one may be back first), and pictures and voice come from
    // both others at every seat.
    const wasHere = before.some((port) => String(port) === quicPort);
    if (wasHere) {
      for (const [i, page] of pages.entries()) {
        await page.waitForFunction((n) => window.__floo.stats.reconnects > n, reconnects[i], { timeout: 30000 })
          .catch(async () => {
            const seen = await page.evaluate(() => ({
              status: document.getElementById('call-status').textContent, closes: window.__floo.stats.closes,
              attempts: window.__floo.stats.attempts, problems: window.__floo.stats.problems, inCall: !document.getElementById('in-call').hidden,
            }));
            throw new Error(`${NAMES[i]} did not reconnect within 30 s of the restart of the node hosting the call: ${JSON.stringify(seen)}`);
          });
      }
    }
    await allFlowing(`after node ${node} restarted`, 30000);
    const backMs = Date.now() - started;
    // A steady stretch after, inside the measurement, and chat for at least 8 s in all.
    await alice.waitForTimeout(Math.max(3000, 8000 - backMs));
    await allFlowing(`a while after node ${node} restarted`, 5000);
    chatting = false;
    await chatter;
    const gaps = await Promise.all(pages.map((page) => page.evaluate(() => window.__gaps.read())));
    hostedAt.push(await ports());
    if (wasHere) handedOver += 1;
    console.log(`node ${node} restarted (drain ${drainMs} ms, away ${awayMs} ms${wasHere ? '; it hosted the call' : ''}); everyone back within ${backMs} ms of the signal`);
    for (const [i, g] of gaps.entries()) {
      const line = others(NAMES[i]).map((n) => `${n} video ${g[`video:${n}`]} ms, audio ${g[`audio:${n}`]} ms`).join('; ');
      console.log(`  at ${NAMES[i]}'s seat, longest gap: ${line}`);
    }
    console.log(`  longest gap at any seat: video ${worst(gaps, 'video')} ms, audio ${worst(gaps, 'audio')} ms`);
    await shot(pages[node], artifacts, `0${node + 1}-after-node-${node}`);
  }
  console.log(`the call's relay port at each seat: ${hostedAt.map((p) => p.join('/')).join(' → ')}; reconnections ${JSON.stringify(await Promise.all(pages.map((page) => page.evaluate(() => window.__floo.stats.reconnects))))}`);
  check(handedOver > 0, 'the node hosting the call was restarted at least once (each was, in turn)');
  for (const p of hostedAt) check(new Set(p).size === 1, `everyone is in one call, on one node: ${p}`);

  // Every message is on every page, once, whichever node served each page meanwhile.
  check(sent.length >= 6, `messages were written during the restarts (${sent.length})`);
  const missed = [];
  for (const [i, page] of pages.entries()) {
    await page.waitForFunction((n) => document.querySelectorAll('#comments .comment').length >= n, sent.length, { timeout: 15000 })
      .catch(() => {});
    const shown = await page.locator('#comments .comment').allTextContents();
    const wrong = sent.filter((text) => shown.filter((s) => s.includes(text)).length !== 1);
    if (wrong.length) {
      const fresh = await page.evaluate(async () => (await (await fetch(location.href)).text()));
      const saved = wrong.filter((text) => fresh.includes(text));
      missed.push(`${NAMES[i]} sees ${JSON.stringify(wrong)} not once (of them, a fresh load of the page shows ${JSON.stringify(saved)}); the page's streams: ${JSON.stringify(await page.evaluate(() => window.__sse))}; now ${await page.evaluate(() => Math.round(performance.now()))}`);
    }
  }
  check(missed.length === 0, `every message on every page, once:\n${missed.join('\n')}`);
  console.log(`chat: ${sent.length} messages written during the restarts, all on every page once`);
  await shot(alice, artifacts, '04-chat-after');
});
console.log('rolling restart walk: ok');
