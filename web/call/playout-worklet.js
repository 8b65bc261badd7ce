// Remote voices, played out: one adaptive jitter buffer per speaker, mixed into the
// call's AudioContext output (the default device, so the browser's echo canceller hears
// it). The page decodes Opus and posts each 20 ms frame here with the speaker's capture
// time and its own arrival time (both µs on wall clocks); this decides when to play it.
//
// - Target delay, per speaker, from the arrival jitter it measures (in the manner of
//   WebRTC's NetEq): each frame's delay relative to the fastest frame of the last two
//   seconds goes into a histogram of 5 ms buckets that forgets (a factor per frame), and
//   the target is its 97th percentile plus one frame (the depth falls by a frame between
//   arrivals). Half a frame measured 5-10 ms less delay but let gaps longer than
//   concealment through on a loaded machine (BENCHMARKS.md).
// - The buffer is steered to the target by playing a little faster or slower (at most
//   8 % faster, 4 % slower, by resampling), so a buffer that grew during a stall comes
//   back down within seconds; after a long pause (the speaker muted) playing starts
//   afresh at the target.
// - Gaps (a lost frame, or an empty buffer) are concealed: the last 10 ms is repeated,
//   fading out, then silence; audio that comes back fades in.
// - Frames whose time has passed are dropped, not played late.

const FRAME_MS = 20;
const BUCKET_MS = 5;
const BUCKETS = 200; // up to a second
const FORGET = 0.995; // per frame: about 3 s of memory at 50 frames/s
const QUANTILE = 0.97;
const MIN_TARGET_MS = 20;
const STEER_DEAD_BAND_MS = 10; // within this of the target, play at the normal rate
const MAX_TARGET_MS = 800;
const WINDOW_MS = 2000; // the fastest frame is looked for over this long
const GAP_RESET_MS = 300; // a longer gap in capture times is a new talk spurt (the speaker muted)
const CONCEAL_MS = 120; // how long a gap is bridged with fading repeats before silence
const REPORT_EVERY = 0.1; // seconds

// `fixed` (for comparison in benches/call_delay.rs only): the playout Floo had before —
// each frame played at max(60 ms from now, the end of the last one), nothing adapted,
// nothing dropped.
const FIXED_MS = 60;

class Speaker {
  constructor(fixed) {
    this.fixed = fixed;
    this.queue = []; // { samples, capture (µs), at: read index }
    this.hist = new Float64Array(BUCKETS);
    this.recent = []; // [arrival µs, transit µs] of the last WINDOW_MS
    this.target = 60;
    this.playhead = null; // capture time (µs) of the next sample to play
    this.started = false;
    this.tail = new Float32Array(480); // the last 10 ms played (a ring), for concealment
    this.tailAt = 0;
    this.concealFor = 0; // samples of concealment played in the current gap
    this.fadeIn = 0;
    this.longestGap = 0; // samples: the longest stretch of concealment so far
    this.stats = { concealed: 0, late: 0, accelerated: 0, decelerated: 0, frames: 0, resets: 0 };
  }

  /** Queued audio, in ms, from the playhead. */
  depth() {
    let samples = 0;
    for (const f of this.queue) samples += f.samples.length - f.at;
    return (samples / sampleRate) * 1000;
  }

  arrive(samples, capture, arrival) {
    this.stats.frames += 1;
    const transit = arrival - capture;
    this.recent.push([arrival, transit]);
    while (this.recent.length && arrival - this.recent[0][0] > WINDOW_MS * 1000) this.recent.shift();
    const fastest = Math.min(...this.recent.map((r) => r[1]));
    const relative = (transit - fastest) / 1000;
    for (let i = 0; i < BUCKETS; i++) this.hist[i] *= FORGET;
    this.hist[Math.min(BUCKETS - 1, Math.floor(relative / BUCKET_MS))] += 1 - FORGET;
    this.target = this.fixed ? FIXED_MS : Math.min(MAX_TARGET_MS, Math.max(MIN_TARGET_MS, this.quantile() + FRAME_MS));
    if (this.fixed) {
      this.queue.push({ samples, capture, at: 0 });
      if (this.playhead === null) this.playhead = capture;
      return;
    }

    const duration = (samples.length / sampleRate) * 1e6;
    if (this.playhead !== null && capture + duration <= this.playhead) {
      this.stats.late += 1; // its time has passed
      return;
    }
    const last = this.queue[this.queue.length - 1];
    const end = last ? last.capture + (last.samples.length / sampleRate) * 1e6 : this.playhead;
    if (end !== null && capture - end > GAP_RESET_MS * 1000) {
      // A new talk spurt after a silence: start again from it, with the target's delay.
      this.queue = [];
      this.playhead = null;
      this.started = false;
      this.stats.resets += 1;
    }
    // In capture order (groups travel on separate streams and may overtake each other).
    let i = this.queue.length;
    while (i > 0 && this.queue[i - 1].capture > capture) i--;
    this.queue.splice(i, 0, { samples, capture, at: 0 });
    if (this.playhead === null) this.playhead = capture;
  }

  quantile() {
    let total = 0;
    for (const w of this.hist) total += w;
    if (total <= 0) return 0;
    let sum = 0;
    for (let i = 0; i < BUCKETS; i++) {
      sum += this.hist[i];
      if (sum >= QUANTILE * total) return (i + 1) * BUCKET_MS;
    }
    return BUCKETS * BUCKET_MS;
  }

  /** Adds this speaker's next `out.length` samples into `out`. */
  render(out) {
    if (!this.started) {
      if (!this.queue.length || this.depth() < this.target) return;
      this.started = true;
      this.fadeIn = 240;
    }
    const depth = this.depth();
    // Play faster when the buffer is above its target, slower when below.
    const error = depth - this.target;
    let rate = 1;
    if (this.fixed) {
      // played as it comes
    } else if (error > STEER_DEAD_BAND_MS) rate = 1 + Math.min(0.08, error / 1000);
    else if (error < -STEER_DEAD_BAND_MS && depth > 0) rate = 1 - Math.min(0.04, -error / 2000);
    if (rate > 1) this.stats.accelerated += out.length * (rate - 1);
    if (rate < 1) this.stats.decelerated += out.length * (1 - rate);
    for (let n = 0; n < out.length; n++) {
      const sample = this.next(rate);
      out[n] += sample;
    }
  }

  /** The next output sample, `rate` input samples on. */
  next(rate) {
    const front = this.queue[0];
    if (!front) {
      if (this.fixed) {
        this.started = false;
        return 0;
      }
      return this.conceal();
    }
    const step = (rate * 1e6) / sampleRate;
    // A frame later than the playhead: a gap (a lost frame) to bridge first.
    if (!this.fixed && front.at === 0 && front.capture > this.playhead + step) {
      this.playhead += step;
      return this.conceal();
    }
    const i = Math.floor(front.at);
    const frac = front.at - i;
    const a = front.samples[i];
    const b = i + 1 < front.samples.length ? front.samples[i + 1] : (this.queue[1]?.samples[0] ?? a);
    let value = a + (b - a) * frac;
    front.at += rate;
    this.playhead += step;
    if (front.at >= front.samples.length) {
      this.queue.shift();
      const next = this.queue[0];
      if (next && this.fixed) {
        this.playhead = next.capture;
      } else if (next) {
        // Carry the fraction over; a frame that starts before the playhead has overlapped.
        next.at = Math.max(0, Math.min(next.samples.length - 1, (this.playhead - next.capture) * sampleRate / 1e6));
        this.playhead = Math.max(this.playhead, next.capture + (next.at / sampleRate) * 1e6);
      }
    }
    if (this.concealFor > 0) {
      this.longestGap = Math.max(this.longestGap, this.concealFor);
      this.concealFor = 0;
      this.fadeIn = 240;
    }
    if (this.fadeIn > 0) value *= 1 - this.fadeIn-- / 240;
    this.tail[this.tailAt] = value;
    this.tailAt = (this.tailAt + 1) % this.tail.length;
    return value;
  }

  /** A sample of concealment: the last 10 ms again, fading out, then silence. */
  conceal() {
    this.stats.concealed += 1;
    const n = this.concealFor++;
    const limit = (CONCEAL_MS / 1000) * sampleRate;
    if (n >= limit) {
      // Nothing to play for longer than concealment covers (the speaker muted, or the
      // link stalled): wait for the buffer to fill to the target again.
      if (!this.queue.length && this.started) {
        this.started = false;
        this.longestGap = Math.max(this.longestGap, n);
        this.concealFor = 0;
      }
      return 0;
    }
    const fade = 1 - n / limit;
    return this.tail[(this.tailAt + n) % this.tail.length] * fade;
  }

  report() {
    return {
      depth: this.depth(), target: this.target, playhead: this.playhead, started: this.started,
      newest: this.queue.length ? this.queue[this.queue.length - 1].capture : null,
      concealedMs: (this.stats.concealed / sampleRate) * 1000, late: this.stats.late,
      acceleratedMs: (this.stats.accelerated / sampleRate) * 1000, deceleratedMs: (this.stats.decelerated / sampleRate) * 1000,
      frames: this.stats.frames, resets: this.stats.resets, longestGapMs: (this.longestGap / sampleRate) * 1000,
    };
  }
}

class FlooPlayout extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.fixed = !!options.processorOptions?.fixed;
    this.speakers = new Map();
    this.reported = 0;
    this.port.onmessage = (event) => {
      const m = event.data;
      if (m.type === 'frame') {
        let speaker = this.speakers.get(m.speaker);
        if (!speaker) this.speakers.set(m.speaker, (speaker = new Speaker(this.fixed)));
        speaker.arrive(m.samples, m.capture, m.arrival);
      } else if (m.type === 'forget') {
        this.speakers.delete(m.speaker);
      } else if (m.type === 'measure-afresh') {
        for (const speaker of this.speakers.values()) speaker.longestGap = 0;
      }
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!out) return true;
    out.fill(0);
    for (const speaker of this.speakers.values()) speaker.render(out);
    for (let i = 0; i < out.length; i++) out[i] = Math.max(-1, Math.min(1, out[i]));
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (currentTime - this.reported >= REPORT_EVERY) {
      this.reported = currentTime;
      const speakers = {};
      for (const [id, s] of this.speakers) speakers[id] = s.report();
      // `time`: the context time at which the sample after this block is heard
      // (the page turns it into a wall-clock time).
      this.port.postMessage({ type: 'report', time: currentTime + out.length / sampleRate, speakers });
    }
    return true;
  }
}

registerProcessor('floo-playout', FlooPlayout);
