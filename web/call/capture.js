// Raw frames from the camera, microphone and screen, for the encoders: VideoFrames and
// AudioData, however the browser can give them.
//
// - MediaStreamTrackProcessor on the page (Chromium, Edge);
// - MediaStreamTrackProcessor in a worker only (Safari): the track goes to a worker,
//   which sends the frames back;
// - neither (Firefox): video from a <video> playing the track, one VideoFrame per
//   painted frame (requestVideoFrameCallback, or a timer where that does not fire);
//   audio from an AudioWorklet that hands PCM over (resampled to 48 kHz mono).
//
// Every source has the same shape: `read()` resolves with the next frame (the caller
// closes it) or null once the source has ended, and `stop()` ends it.

/** The sample rate every audio source delivers in the fallback (Opus's own). */
export const SAMPLE_RATE = 48000;
/** Frames a slow consumer may leave queued; older ones are dropped (and closed). */
const MAX_QUEUED = 4;
/** Frames from a <video> are taken at most this often (30 a second, with some slack). */
const MIN_FRAME_INTERVAL_US = 30_000;

/** A bounded queue of frames between a producer and `read()`. */
class Frames {
  constructor(onStop) {
    this.queue = [];
    this.waiting = null;
    this.ended = false;
    this.onStop = onStop;
  }

  push(frame) {
    if (this.ended) return frame.close();
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      return resolve(frame);
    }
    this.queue.push(frame);
    while (this.queue.length > MAX_QUEUED) this.queue.shift().close();
  }

  read() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => { this.waiting = resolve; });
  }

  stop() {
    if (this.ended) return;
    this.ended = true;
    for (const frame of this.queue.splice(0)) frame.close();
    this.waiting?.(null);
    this.waiting = null;
    this.onStop?.();
  }
}

/** Which capture the browser offers: 'processor', 'worker' or 'element'. */
export async function captureMethod() {
  if (typeof MediaStreamTrackProcessor === 'function') return 'processor';
  if (await workerHasProcessor()) return 'worker';
  return 'element';
}

let workerCheck = null;
function workerHasProcessor() {
  workerCheck ??= new Promise((resolve) => {
    let worker;
    try {
      worker = new Worker('/static/call/capture-worker.js', { type: 'module' });
    } catch (e) {
      return resolve(false);
    }
    const done = (answer) => { worker.terminate(); resolve(answer); };
    worker.onmessage = (event) => done(event.data?.type === 'can' && event.data.processor);
    worker.onerror = () => done(false);
    worker.postMessage({ type: 'can' });
    setTimeout(() => done(false), 2000);
  });
  return workerCheck;
}

/** A source read straight from MediaStreamTrackProcessor. */
function fromProcessor(track) {
  const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
  return {
    read: () => reader.read().then(({ value, done }) => (done ? null : value), () => null),
    stop: () => reader.cancel().catch(() => {}),
  };
}

/** A source read by MediaStreamTrackProcessor in a worker (the track is moved there). */
function fromWorker(track) {
  const worker = new Worker('/static/call/capture-worker.js', { type: 'module' });
  const frames = new Frames(() => worker.terminate());
  worker.onmessage = (event) => {
    if (event.data?.type === 'frame') frames.push(event.data.frame);
    else if (event.data?.type === 'end') frames.stop();
  };
  worker.postMessage({ type: 'track', track }, [track]);
  return frames;
}

/** Video frames as the page paints them from a <video> playing the track. */
function videoFromElement(track) {
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  // Kept in the page (some browsers paint nothing, hence fire no callbacks, for a
  // detached video) but out of sight.
  video.className = 'capture-source';
  video.srcObject = new MediaStream([track]);
  document.body.append(video);
  let timer = null;
  const frames = new Frames(() => {
    clearInterval(timer);
    video.srcObject = null;
    video.remove();
  });
  let last = -Infinity;
  let lastMediaTime = null;
  const grab = (mediaTime) => {
    if (frames.ended || video.readyState < 2 || !video.videoWidth) return;
    // One VideoFrame per new picture (a browser may call back per paint), at most 30 a second.
    if (mediaTime !== undefined && mediaTime === lastMediaTime) return;
    const timestamp = Math.round(performance.now() * 1000);
    if (timestamp - last < MIN_FRAME_INTERVAL_US) return;
    lastMediaTime = mediaTime;
    last = timestamp;
    try {
      frames.push(new VideoFrame(video, { timestamp }));
    } catch (e) { /* not paintable yet */ }
  };
  let painted = false;
  if ('requestVideoFrameCallback' in video) {
    const onFrame = (now, metadata) => {
      painted = true;
      grab(metadata?.mediaTime);
      if (!frames.ended) video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }
  // Where the browser paints no frames for a video out of sight, take them on a timer.
  setTimeout(() => {
    if (!painted && !frames.ended) timer = setInterval(() => grab(), 1000 / 30);
  }, 700);
  video.play().catch(() => {});
  track.addEventListener('ended', () => frames.stop());
  return frames;
}

/**
 * Audio in 20 ms AudioData chunks of 48 kHz mono from an AudioWorklet, in `shared` (the
 * call's AudioContext, started by the click that joined, as browsers require) when it
 * can read the track.
 */
async function audioFromWorklet(track, shared) {
  const own = !(shared && canRead(shared, track));
  const context = own ? await contextFor(track) : shared;
  await context.audioWorklet.addModule('/static/call/capture-worklet.js');
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const node = new AudioWorkletNode(context, 'floo-capture', {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
    processorOptions: { targetRate: SAMPLE_RATE, chunk: SAMPLE_RATE / 50 },
  });
  // A silent path to the output keeps the node processing in every browser.
  const silence = context.createGain();
  silence.gain.value = 0;
  source.connect(node).connect(silence).connect(context.destination);
  const frames = new Frames(() => {
    node.port.onmessage = null;
    source.disconnect();
    node.disconnect();
    silence.disconnect();
    if (own) context.close().catch(() => {});
  });
  // AudioData timestamps on the page's clock, like the video frames.
  const base = performance.now() - context.currentTime * 1000;
  node.port.onmessage = (event) => {
    const { samples, time } = event.data;
    // The samples ride along (`mono`): WebKitGTK 2.50's AudioData.copyTo on mono audio
    // kills its web process (src/media/PROTOCOL.md), and the publisher needs only these.
    frames.push(Object.assign(new AudioData({
      format: 'f32-planar', sampleRate: SAMPLE_RATE, numberOfFrames: samples.length, numberOfChannels: 1,
      timestamp: Math.round((base + time * 1000) * 1000), data: samples,
    }), { mono: samples }));
  };
  track.addEventListener('ended', () => frames.stop());
  return frames;
}

/** Whether `context` can read the track (Firefox refuses a stream whose rate differs). */
function canRead(context, track) {
  try {
    context.createMediaStreamSource(new MediaStream([track])).disconnect();
    return true;
  } catch (e) {
    return false;
  }
}

/** An AudioContext the track can feed: at 48 kHz where the browser allows it. */
async function contextFor(track) {
  for (const options of [{ sampleRate: SAMPLE_RATE }, {}]) {
    const context = new AudioContext(options);
    if (canRead(context, track)) {
      if (context.state === 'suspended') context.resume().catch(() => {});
      return context;
    }
    await context.close().catch(() => {});
  }
  throw new Error('the microphone cannot be read here');
}

/** VideoFrames from a camera or screen track. */
export async function videoSource(track) {
  switch (await captureMethod()) {
    case 'processor': return fromProcessor(track);
    case 'worker': return fromWorker(track);
    default: return videoFromElement(track);
  }
}

/** AudioData from a microphone track (`context`: the call's AudioContext, if any). */
export async function audioSource(track, context) {
  switch (await captureMethod()) {
    case 'processor': return fromProcessor(track);
    case 'worker': return fromWorker(track);
    default: return audioFromWorklet(track, context);
  }
}
