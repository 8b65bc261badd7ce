// The microphone as PCM for the encoder where MediaStreamTrackProcessor is missing
// (Firefox): mixes the input to mono, resamples it to the target rate (48 kHz, Opus's
// own) and posts it in chunks of `chunk` samples with the chunk's start time in
// seconds on the AudioContext's clock (see capture.js).

class FlooCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, chunk } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.targetRate = targetRate;
    this.size = chunk;
    this.chunk = new Float32Array(chunk);
    this.filled = 0;
    this.position = 0; // where the next output sample falls, in input samples of this block
    this.previous = 0; // the last input sample of the previous block
    this.produced = 0;
    this.start = null;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    this.start ??= currentTime;
    const n = channels[0].length;
    if (this.mono?.length !== n) this.mono = new Float32Array(n);
    const mono = this.mono.fill(0);
    for (const channel of channels) for (let i = 0; i < n; i++) mono[i] += channel[i] / channels.length;
    // Linear interpolation between input samples; index -1 is the previous block's last.
    const s = (i) => (i < 0 ? this.previous : mono[i]);
    while (this.position <= n - 1) {
      const i = Math.floor(this.position);
      const frac = this.position - i;
      const a = s(i);
      const b = i + 1 < n ? s(i + 1) : a;
      this.chunk[this.filled++] = a + (b - a) * frac;
      this.position += this.step;
      if (this.filled === this.chunk.length) this.flush();
    }
    this.position -= n;
    this.previous = mono[n - 1];
    return true;
  }

  flush() {
    const samples = this.chunk;
    const time = this.start + this.produced / this.targetRate;
    this.produced += this.size;
    this.port.postMessage({ samples, time }, [samples.buffer]);
    // The posted buffer moved to the page: start a new one.
    this.chunk = new Float32Array(this.size);
    this.filled = 0;
  }
}

registerProcessor('floo-capture', FlooCapture);
