// Makes synthetic-call.bin (see README.md): serve this folder on 127.0.0.1:8765
// (`python3 -m http.server 8765 --bind 127.0.0.1`), then `node record.mjs` from here.
import { chromium } from '../e2e/node_modules/playwright-core/index.mjs';
import { writeFileSync } from 'node:fs';

const browser = await chromium.launch({
  executablePath: process.env.FLOO_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
});
const page = await browser.newPage();
await page.goto('http://127.0.0.1:8765/record.html');
const frames = await page.evaluate(() => window.record(6));
await browser.close();
// Each kind's times from its own first frame (camera and microphone clocks differ).
const first = (audio) => Math.min(...frames.filter((f) => (f.track === 3) === audio).map((f) => f.timestampUs));
const [videoBase, audioBase] = [first(false), first(true)];
for (const f of frames) f.rel = f.timestampUs - (f.track === 3 ? audioBase : videoBase);
frames.sort((a, b) => a.rel - b.rel || a.track - b.track);
const parts = [Buffer.from('FLOOREC1')];
for (const f of frames) {
  const data = Buffer.from(f.data, 'base64');
  const head = Buffer.alloc(15);
  head.writeUInt8(f.track, 0);
  head.writeUInt8(f.keyframe ? 1 : 0, 1);
  head.writeBigUInt64BE(BigInt(f.rel), 2);
  head.writeUInt8(f.level, 10);
  head.writeUInt32BE(data.length, 11);
  parts.push(head, data);
}
writeFileSync(new URL('./synthetic-call.bin', import.meta.url), Buffer.concat(parts));
console.log(`${frames.length} frames`);
