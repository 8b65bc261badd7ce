// Receiving: the relay's group streams are read, their frames decoded with WebCodecs;
// voices go to the jitter buffer of playout-worklet.js in the call's one AudioContext
// (the default output, so that the browser's echo canceller hears them), pictures to a
// render clock that paints each frame when its speaker's voice of the same moment is
// heard (lips and voice together). A lost group or a decoder error asks the publisher
// for a keyframe at once instead of waiting for the next one.

import { GroupReader, WireError } from './wire.js';

/** The largest frame accepted from the relay (its own limit, src/media/room.rs). */
const MAX_FRAME = 512 * 1024;
/** A video track asks its publisher for a keyframe at most this often. */
const KEYFRAME_REQUEST_EVERY_MS = 500;
/** Decoded pictures kept waiting for their time, per track, at most. */
const MAX_WAITING_PICTURES = 45;
/** Without audio to follow, pictures wait this long beyond their fastest transit. */
const VIDEO_ONLY_DELAY_MS = 30;

/** Wall-clock µs (the clock capture times are stamped with). */
export const wallUs = () => (performance.timeOrigin + performance.now()) * 1000;

/** Reads the relay's group streams as they come, until the link closes. */
export async function readGroups(call, link) {
  const streams = link.incoming();
  try {
    for (;;) {
      const { value, done } = await streams.read();
      if (done) return;
      readGroup(call, value);
    }
  } catch (e) { /* the link closed */ }
}

async function readGroup(call, stream) {
  const reader = stream.getReader();
  const group = new GroupReader(MAX_FRAME);
  let track = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      group.push(value);
      if (!group.header) continue;
      if (!track) {
        track = call.tracks.get(group.header.track);
        // Not (or no longer) shown, or older than what already came: let it go.
        const unwanted = !track || !call.accepts(track);
        if (unwanted || (track.sequence !== undefined && group.header.sequence < track.sequence)) {
          reader.cancel().catch(() => {});
          return;
        }
        track.sequence = group.header.sequence;
      }
      const participant = call.stats.received[track.participant] ??= { bytes: 0 };
      participant.bytes += value.length;
      for (let frame = group.nextFrame(); frame; frame = group.nextFrame()) {
        if (!call.accepts(track)) return reader.cancel().catch(() => {});
        // A newer group of this video track has started (with its keyframe) while this one
        // was still coming: this one's remaining pictures refer to frames the decoder has
        // moved past, and would paint garbage until the next keyframe.
        if (track.kind !== 'audio' && group.header.sequence < track.sequence) {
          call.stats.supersededGroups = (call.stats.supersededGroups || 0) + 1;
          return reader.cancel().catch(() => {});
        }
        onFrame(call, track, frame);
      }
    }
  } catch (error) {
    groupLost(call, track, error);
  }
}

/**
 * A group the relay gave up on its way to us; the reset code says why (0x40: our link
 * could not take it in time; otherwise the publisher's uplink was late, the track ended
 * or we unsubscribed). The relay says the same on the control stream (`dropped`), which
 * arrives even when the reset does not surface here. A video group cut short leaves the
 * decoder without the frames its next ones build on: ask for a keyframe.
 */
function groupLost(call, track, error) {
  if (!call.link) return; // the whole link went, not one group
  if (error instanceof WireError) return call.problem(`The relay sent a malformed group (${error.message}).`);
  const code = error?.streamErrorCode ?? 'none';
  call.stats.resets[code] = (call.stats.resets[code] || 0) + 1;
  if (track && track.kind !== 'audio' && call.tracks.has(track.id)) {
    track.needKey = true;
    requestKeyframe(call, track);
  }
}

/** Asks the track's publisher (through the relay) for a new group with a keyframe. */
function requestKeyframe(call, track) {
  const now = performance.now();
  if (now - (track.keyframeAskedAt || -1e9) < KEYFRAME_REQUEST_EVERY_MS) return;
  track.keyframeAskedAt = now;
  call.stats.keyframeRequests = (call.stats.keyframeRequests || 0) + 1;
  call.send({ type: 'keyframe', track: track.id });
}

function onFrame(call, track, frame) {
  const arrival = wallUs();
  track.lastFrameAt = performance.now();
  const transit = arrival - frame.timestampUs;
  const transits = (call.stats.transits[`${track.participant}:${track.kind}`] ??= []);
  transits.push(transit / 1000);
  if (transits.length > 200) transits.shift();
  if (track.kind === 'audio') return playAudio(call, track, frame, arrival);
  track.fastest = Math.min(track.fastest ?? Infinity, transit);
  if (!track.decoder) startVideoDecoder(call, track);
  if (track.needKey && !frame.keyframe) return;
  track.needKey = false;
  try {
    track.decoder.decode(new EncodedVideoChunk({ type: frame.keyframe ? 'key' : 'delta', timestamp: frame.timestampUs, data: frame.payload }));
  } catch (e) {
    resetVideoDecoder(call, track);
  }
}

function startVideoDecoder(call, track) {
  track.needKey = true;
  track.pictures = [];
  track.decoder = new VideoDecoder({
    // Decoded pictures wait for their time on the render clock.
    output: (picture) => {
      if (!call.tracks.has(track.id)) return picture.close();
      track.pictures.push(picture);
      while (track.pictures.length > MAX_WAITING_PICTURES) track.pictures.shift().close();
      call.stats.decodedFrames[track.participant] = (call.stats.decodedFrames[track.participant] || 0) + 1;
    },
    error: () => resetVideoDecoder(call, track),
  });
  track.decoder.configure({ codec: track.config.codec || 'vp8', optimizeForLatency: true });
  startRenderClock(call);
}

/** A track's decoder and the pictures waiting to be painted go. */
export function closeDecoding(track) {
  try { track.decoder?.close(); } catch (e) { /* closed already */ }
  track.decoder = null;
  for (const p of track.pictures || []) p.close();
  track.pictures = [];
}

/** A decoder that failed starts over from a keyframe, asked for at once. */
export function resetVideoDecoder(call, track) {
  closeDecoding(track);
  call.stats.decoderResets = (call.stats.decoderResets || 0) + 1;
  if (!call.tracks.has(track.id)) return;
  startVideoDecoder(call, track);
  requestKeyframe(call, track);
}

/**
 * The render clock: on every animation frame, each video track shows its newest picture
 * whose time has come — its capture time plus the delay at which its sender's voice is
 * heard now (or, without audio, its fastest transit plus a little) — and drops the older
 * ones unseen, so a late joiner's catch-up frames never play as a burst.
 */
function startRenderClock(call) {
  if (call.renderClock) return;
  const tick = () => {
    if (!call.renderClock) return;
    const now = wallUs();
    for (const track of call.tracks.values()) {
      if (!track.pictures?.length) continue;
      const delay = videoDelayUs(call, track);
      let due = null;
      while (track.pictures.length && track.pictures[0].timestamp + delay <= now) {
        due?.close();
        due = track.pictures.shift();
        if (track.pictures.length && track.pictures[0].timestamp + delay <= now) call.stats.skippedPictures += 1;
      }
      if (!due) continue;
      const tile = call.tiles.forTrack(track, call.participants.get(track.participant));
      tile?.draw(due);
      paintedStats(call, track, due, now);
      due.close();
    }
    requestAnimationFrame(tick);
  };
  call.renderClock = true;
  requestAnimationFrame(tick);
}

export function stopRenderClock(call) {
  call.renderClock = false;
}

function videoDelayUs(call, track) {
  if (call.fixedPlayout) return 0; // the old way (benches/call_delay.rs): painted as soon as decoded
  const audio = call.audioDelay.get(track.participant);
  if (audio && performance.now() - audio.at < 1000) return audio.delayUs;
  return (Number.isFinite(track.fastest) ? track.fastest : 0) + VIDEO_ONLY_DELAY_MS * 1000;
}

function paintedStats(call, track, picture, now) {
  const stats = call.stats;
  const p = track.participant;
  stats.decoded[p] = (stats.decoded[p] || 0) + 1;
  stats.sizes[p] = [picture.displayWidth, picture.displayHeight];
  stats.firstFrameAt[p] ??= performance.now();
  const delayMs = (now - picture.timestamp) / 1000;
  (stats.videoDelays[p] ??= []).push(delayMs);
  if (stats.videoDelays[p].length > 200) stats.videoDelays[p].shift();
}

/**
 * The call's one AudioContext and its playout worklet (remote voices, and the microphone
 * where it is read by a worklet). Browsers start an AudioContext only after a click: the
 * join button makes it.
 */
export function audioContext(call) {
  call.audioContext ??= new AudioContext({ sampleRate: 48000 });
  return call.audioContext;
}

async function playoutNode(call) {
  if (!call.playoutNode) {
    const ctx = audioContext(call);
    call.playoutNode = ctx.audioWorklet.addModule('/static/call/playout-worklet.js').then(() => {
      const fixed = call.fixedPlayout;
      const node = new AudioWorkletNode(ctx, 'floo-playout', {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [2], processorOptions: { fixed },
      });
      node.connect(ctx.destination);
      node.port.onmessage = (event) => onPlayoutReport(call, event.data);
      return node;
    });
  }
  return call.playoutNode;
}

/**
 * What the jitter buffers say: their depth, and how late each voice is heard: the context
 * time `report.time` is heard the output latency after the context renders it.
 */
function onPlayoutReport(call, report) {
  const ctx = call.audioContext;
  const heardUs = wallUs() + (report.time - ctx.currentTime + outputLatency(call)) * 1e6;
  for (const [participant, s] of Object.entries(report.speakers)) {
    const id = Number(participant);
    call.stats.playout[id] = s;
    if (s.started && s.playhead !== null) {
      const delayUs = heardUs - s.playhead;
      call.audioDelay.set(id, { delayUs, at: performance.now() });
      (call.stats.audioDelays[id] ??= []).push(delayUs / 1000);
      if (call.stats.audioDelays[id].length > 200) call.stats.audioDelays[id].shift();
    }
  }
}

/** Firefox's `outputLatency` (and `getOutputTimestamp`) can hang the page (seen with
 * Firefox ESR 153 and two calls in one browser): there a typical 20 ms is assumed. */
const LATENCY_IS_SAFE = !/Firefox\//.test(navigator.userAgent);
const ASSUMED_OUTPUT_LATENCY_S = 0.02;

/** The output's latency (base and device), read at most every 5 s. */
function outputLatency(call) {
  const ctx = call.audioContext;
  const now = performance.now();
  if (!call.latency || now - call.latency.at > 5000) {
    const device = LATENCY_IS_SAFE ? ctx.outputLatency || 0 : ASSUMED_OUTPUT_LATENCY_S;
    call.latency = { at: now, seconds: (ctx.baseLatency || 0) + device };
  }
  return call.latency.seconds;
}

/**
 * Decodes a voice and hands each 20 ms to its jitter buffer with its capture and arrival
 * times. The times come from our own record of what went into the decoder (one output
 * per Opus frame, in order), not from the decoder's output timestamps, which count
 * samples from the first frame and so fall behind by a frame for every frame that never
 * came. A frame older than one already decoded (its retransmission came after its
 * successors) is not decoded out of order: the jitter buffer conceals its slot.
 */
function playAudio(call, track, frame, arrival) {
  if (!track.decoder) {
    track.inFlight = [];
    track.lastDecoded = -Infinity;
    track.decoder = new AudioDecoder({
      output: (data) => {
        const i = track.inFlight.findIndex((f) => f.capture === data.timestamp);
        const times = i >= 0 ? track.inFlight.splice(0, i + 1).pop() : track.inFlight.shift();
        const samples = new Float32Array(data.numberOfFrames);
        data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
        data.close();
        if (!times) return;
        let energy = 0;
        for (const x of samples) energy += x * x;
        const stats = call.stats;
        stats.audio[track.participant] = (stats.audio[track.participant] || 0) + 1;
        stats.loudest[track.participant] = Math.max(stats.loudest[track.participant] || 0, Math.sqrt(energy / samples.length));
        playoutNode(call).then((node) => node.port.postMessage(
          { type: 'frame', speaker: track.participant, samples, capture: times.capture, arrival: times.arrival }, [samples.buffer],
        ));
      },
      error: () => { track.decoder = null; },
    });
    const { sampleRate = 48000, numberOfChannels = 1 } = track.config;
    track.decoder.configure({ codec: 'opus', sampleRate, numberOfChannels });
  }
  if (frame.timestampUs <= track.lastDecoded) {
    call.stats.lateAudio = (call.stats.lateAudio || 0) + 1;
    return;
  }
  track.lastDecoded = frame.timestampUs;
  track.inFlight.push({ capture: frame.timestampUs, arrival });
  if (track.inFlight.length > 50) track.inFlight.shift();
  try {
    track.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: frame.timestampUs, data: frame.payload }));
  } catch (e) {
    track.inFlight.pop();
  }
}

/** A voice not heard for this long has its decoder closed (the relay forwards a few). */
const IDLE_AUDIO_MS = 10_000;
/** A video track that sent nothing for this long (paused, or a layer switched) likewise. */
const IDLE_VIDEO_MS = 3_000;

/**
 * Closes the decoders of tracks that stopped coming: the relay forwards only the few
 * loudest voices and the video on screen, so a large meeting keeps a handful of decoders,
 * not one per person.
 */
export function sweepDecoders(call) {
  const now = performance.now();
  for (const track of call.tracks.values()) {
    if (!track.decoder) continue;
    const idle = now - (track.lastFrameAt ?? 0);
    if (idle > (track.kind === 'audio' ? IDLE_AUDIO_MS : IDLE_VIDEO_MS)) {
      closeDecoding(track);
      track.sequence = undefined;
      call.stats.decodersClosed = (call.stats.decodersClosed || 0) + 1;
    }
  }
}

/** A speaker who left: their jitter buffer goes. */
export function forgetSpeaker(call, participant) {
  call.audioDelay.delete(participant);
  call.playoutNode?.then((node) => node.port.postMessage({ type: 'forget', speaker: participant }));
}
