// Publishing: the camera in two simulcast layers, the microphone and a shared screen,
// each encoded with WebCodecs (VP8, Opus) and sent in groups, one unidirectional
// stream per group (a video group is a GOP, an audio group a run of Opus frames).

import { encodeFrame, encodeGroupHeader } from './wire.js';
import { SAMPLE_RATE, audioSource, videoSource } from './capture.js';

/** Wall-clock µs: every frame carries its capture time on the sender's wall clock. */
const wallUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
/** Audio timestamps follow the sample count, steered gently to the wall clock (see
 * `steerCapture`); they are set back to it at once only if they are further off than this (µs). */
const AUDIO_RESYNC_US = 100_000;

/**
 * The wall-clock capture time of the next chunk of microphone samples. A microphone's sample
 * clock is not the wall clock (100 ppm is 6 ms a minute), and the recording and the receivers
 * place voices by these timestamps, so counting samples alone would pull the voice away from
 * the pictures. `readAt` is when the chunk was read minus its duration: never earlier than its
 * capture, often later (the page was busy). So the estimate follows readings below it at once
 * and readings above it only slowly: it tracks their lower edge, and a busy page does not drag
 * it late.
 */
export function steerCapture(estimate, readAt) {
  if (estimate === null || Math.abs(estimate - readAt) > AUDIO_RESYNC_US) return readAt;
  const error = readAt - estimate;
  return estimate + error * (error < 0 ? 0.1 : 0.002);
}

export const VIDEO_LAYERS = [
  { id: 1, layer: 0, width: 320, height: 180, bitrate: 150_000 },
  { id: 2, layer: 1, width: 640, height: 360, bitrate: 600_000 },
];
export const AUDIO_TRACK = 3;
export const SCREEN_TRACK = 4;
const GOP_FRAMES = 30; // a keyframe, hence a new group, every second at 30 fps
const AUDIO_GROUP_FRAMES = 2; // 40 ms of 20 ms Opus frames per audio group (see BENCHMARKS.md)
const AUDIO_CONFIG = { codec: 'opus', sampleRate: SAMPLE_RATE, numberOfChannels: 1 };

/** Upstream send order: audio before screen before camera, newer groups first. */
function sendOrder(kind, sequence) {
  const rank = { audio: 3, screen: 2, camera: 1 }[kind];
  return rank * 2 ** 40 + (sequence % 2 ** 40);
}

/**
 * A track's groups: a new stream per group, its frames written in order. Groups do not
 * wait for each other: the next group's stream opens while the last one's frames are
 * still being written (opening a stream takes a round trip through the browser), and
 * frames are queued, not awaited one by one.
 */
function groupWriter(call, trackId, kind) {
  let sequence = Date.now(); // increases across reconnects
  let current = null;
  const fail = (group) => () => { group.broken = true; };
  return {
    start() {
      current?.finish();
      const link = call.link;
      const seq = sequence++;
      const group = { pending: [encodeGroupHeader(trackId, seq)], writer: null, done: false, broken: false };
      group.flush = () => {
        if (!group.writer || group.broken) return;
        for (const bytes of group.pending.splice(0)) group.writer.write(bytes).catch(fail(group));
        if (group.done) group.writer.close().catch(() => {});
      };
      group.finish = () => {
        group.done = true;
        group.flush();
      };
      current = group;
      if (!link) return;
      link.openGroup(sendOrder(kind, seq)).then((writer) => {
        group.writer = writer;
        group.flush();
      }, fail(group));
    },
    write(bytes) {
      if (!current || current.broken) return;
      current.pending.push(bytes);
      current.flush();
    },
    close() { current?.finish(); current = null; },
  };
}

/** A VideoEncoder configuration this browser takes, preferring real-time encoding. */
async function videoConfig(layer) {
  const base = { codec: 'vp8', width: layer.width, height: layer.height, bitrate: layer.bitrate, framerate: 30 };
  for (const config of [{ ...base, latencyMode: 'realtime' }, base]) {
    const support = await VideoEncoder.isConfigSupported(config).catch(() => null);
    if (support?.supported) return config;
  }
  throw new Error('this browser cannot encode VP8 video');
}

/**
 * Publishes a camera or screen track: announces its layers and encodes each frame at
 * each layer's size. Returns a function that stops it.
 */
export async function publishVideo(call, track, layers, kind) {
  const source = await videoSource(track);
  const configs = await Promise.all(layers.map(videoConfig));
  let stopped = false;
  const outs = layers.map((l, i) => {
    const group = groupWriter(call, l.id, kind);
    const encoder = new VideoEncoder({
      output: (chunk) => {
        if (chunk.type === 'key') group.start();
        const data = new Uint8Array(chunk.byteLength);
        chunk.copyTo(data);
        group.write(encodeFrame({ keyframe: chunk.type === 'key', timestampUs: chunk.timestamp, level: 127 }, data));
        call.stats.sent[kind] = (call.stats.sent[kind] || 0) + 1;
      },
      error: (e) => call.problem(`The ${kind} encoder failed: ${e.message}`),
    });
    encoder.configure(configs[i]);
    return { l, encoder, group, canvas: new OffscreenCanvas(l.width, l.height) };
  });
  for (const l of layers) {
    // A new track is watched until the relay says otherwise (its `layers` names it then).
    call.activeLayers?.add(l.id);
    call.send({ type: 'announce', track: { id: l.id, kind, layer: l.layer, config: { codec: 'vp8', codedWidth: l.width, codedHeight: l.height } } });
  }
  let count = 0;
  let keyframeRequests = call.keyframeRequests;
  let last = 0;
  (async () => {
    while (!stopped) {
      const frame = await source.read();
      if (!frame) break;
      const captured = Math.max(last + 1, wallUs());
      last = captured;
      const paused = kind === 'camera' && call.state.camera_off;
      if (!paused && !stopped) {
        if (call.keyframeRequests !== keyframeRequests) {
          keyframeRequests = call.keyframeRequests;
          count = 0;
        }
        const gop = count % (call.gopFrames || GOP_FRAMES) === 0;
        for (const o of outs) {
          if (o.encoder.state !== 'configured' || o.encoder.encodeQueueSize > 2) continue; // behind: drop, not queue
          // Nobody watches this layer (the relay's `layers`): not encoded at all.
          if (call.activeLayers && !call.activeLayers.has(o.l.id)) continue;
          // A receiver that lost this layer's group asked (through the relay) for a keyframe.
          const keyFrame = gop || call.keyframesWanted.delete(o.l.id);
          if (keyFrame && !gop) call.stats.keyframesSent = (call.stats.keyframesSent || 0) + 1;
          // Scale to the layer's size so every layer is a real picture of its own size.
          o.canvas.getContext('2d').drawImage(frame, 0, 0, o.l.width, o.l.height);
          const scaled = new VideoFrame(o.canvas, { timestamp: captured });
          o.encoder.encode(scaled, { keyFrame });
          scaled.close();
        }
        count += 1;
      } else {
        count = 0; // the first frame after camera-on is a keyframe
      }
      frame.close();
    }
  })().catch((e) => call.problem(`The ${kind} could not be read: ${e.message}`));
  /** Stops; `withdraw`: the tracks also end for the others (a device is being replaced). */
  return (withdraw = false) => {
    stopped = true;
    source.stop();
    for (const o of outs) {
      try { o.encoder.close(); } catch (e) { /* closed */ }
      o.group.close();
    }
    if (withdraw) for (const l of layers) call.send({ type: 'unannounce', id: l.id });
  };
}

/** Publishes the microphone in Opus, its loudness riding with each frame. */
export async function publishAudio(call, track) {
  const source = await audioSource(track, call.audioContext);
  let stopped = false;
  const group = groupWriter(call, AUDIO_TRACK, 'audio');
  let level = 127;
  let count = 0;
  let config = null;
  // Each output frame is stamped with the capture time of its first sample, worked out
  // from what went in (some browsers' encoders give every output the same timestamp).
  const inputs = []; // { sample: the input's first sample, counted over all inputs; capture µs }
  let inputSamples = 0;
  let outputSamples = 0;
  const captureOf = (sample) => {
    while (inputs.length > 1 && inputs[1].sample <= sample) inputs.shift();
    const from = inputs[0];
    return from ? Math.round(from.capture + ((sample - from.sample) / config.sampleRate) * 1e6) : 0;
  };
  const encoder = new AudioEncoder({
    output: (chunk) => {
      if (count % AUDIO_GROUP_FRAMES === 0) group.start();
      count += 1;
      const data = new Uint8Array(chunk.byteLength);
      chunk.copyTo(data);
      const timestampUs = captureOf(outputSamples);
      outputSamples += Math.round(((chunk.duration || 20_000) * config.sampleRate) / 1e6);
      group.write(encodeFrame({ keyframe: true, timestampUs, level }, data));
      call.stats.sent.audio = (call.stats.sent.audio || 0) + 1;
    },
    error: (e) => call.problem(`The microphone encoder failed: ${e.message}`),
  });
  let heard = false;
  let nextTimestamp = null; // µs: the wall-clock capture time of the next chunk's first sample
  // A microphone that yields nothing would leave the person unheard without a word.
  const silent = setTimeout(() => {
    if (heard || stopped) return;
    const suspended = call.audioContext?.state === 'suspended';
    call.problem(suspended
      ? 'Others cannot hear you: this browser has not started its audio (no sound device, or audio not allowed for this page).'
      : 'Others cannot hear you: no sound is coming from your microphone.');
  }, 3000);
  (async () => {
    while (!stopped) {
      const data = await source.read();
      if (!data) break;
      heard = true;
      if (!config) {
        // The first chunk says what the microphone delivers (48 kHz mono with voice
        // processing; often 44.1 kHz stereo without): the encoder takes that rate, mixed
        // down to mono. Opus itself runs at 48 kHz whatever goes in, so receivers always
        // decode at 48 kHz.
        config = { ...AUDIO_CONFIG, sampleRate: data.sampleRate, numberOfChannels: 1 };
        const wanted = { ...config, bitrate: 32000 };
        const support = await AudioEncoder.isConfigSupported(wanted).catch((e) => ({ supported: false, error: e }));
        if (!support.supported) {
          call.problem(`Others cannot hear you: this browser cannot encode your microphone's sound (${data.sampleRate} Hz).`);
          data.close();
          break;
        }
        encoder.configure(wanted);
        call.stats.microphone = { sampleRate: data.sampleRate, channels: data.numberOfChannels };
        call.send({ type: 'announce', track: { id: AUDIO_TRACK, kind: 'audio', layer: 0, config: AUDIO_CONFIG } });
      }
      const duration = (data.numberOfFrames / data.sampleRate) * 1e6;
      nextTimestamp = steerCapture(nextTimestamp, wallUs() - duration);
      const captured = Math.round(nextTimestamp);
      nextTimestamp += duration;
      if (!call.state.muted && !stopped) {
        // The level rides with the frames (RFC 6464 style: 0 loudest, 127 silent).
        const samples = downmix(data);
        const rms = Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length) || 1e-7;
        level = Math.max(0, Math.min(127, Math.round(-20 * Math.log10(rms))));
        // Opus here is mono, stamped with its capture time on the wall clock, continuous
        // from chunk to chunk.
        const mono = new AudioData({
          format: 'f32-planar', sampleRate: data.sampleRate, numberOfFrames: data.numberOfFrames,
          numberOfChannels: 1, timestamp: captured, data: samples,
        });
        if (encoder.state === 'configured') {
          inputs.push({ sample: inputSamples, capture: captured });
          inputSamples += data.numberOfFrames;
          encoder.encode(mono);
        }
        mono.close();
      }
      data.close();
    }
  })().catch((e) => call.problem(`The microphone could not be read: ${e.message}`));
  /** Stops; `withdraw`: the track also ends for the others (a device is being replaced). */
  return (withdraw = false) => {
    stopped = true;
    clearTimeout(silent);
    source.stop();
    try { encoder.close(); } catch (e) { /* closed */ }
    group.close();
    if (withdraw && config) call.send({ type: 'unannounce', id: AUDIO_TRACK });
  };
}

/**
 * The channels of `data` mixed down to one (the average of all of them); the worklet's
 * chunks carry their mono samples already (`mono`, see capture.js), read without copyTo.
 */
function downmix(data) {
  if (data.mono instanceof Float32Array && data.mono.length === data.numberOfFrames) return data.mono;
  const mono = new Float32Array(data.numberOfFrames);
  data.copyTo(mono, { planeIndex: 0, format: 'f32-planar' });
  if (data.numberOfChannels > 1) {
    const plane = new Float32Array(data.numberOfFrames);
    for (let c = 1; c < data.numberOfChannels; c += 1) {
      data.copyTo(plane, { planeIndex: c, format: 'f32-planar' });
      for (let i = 0; i < mono.length; i += 1) mono[i] += plane[i];
    }
    for (let i = 0; i < mono.length; i += 1) mono[i] /= data.numberOfChannels;
  }
  return mono;
}
