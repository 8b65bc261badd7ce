// Receiving: the relay's group streams are read, their frames decoded with WebCodecs,
// video drawn into the sender's tile and audio played through one AudioContext on the
// default output (so that the browser's echo canceller hears it; see PROTOCOL.md).

import { GroupReader, WireError } from './wire.js';

/** The largest frame accepted from the relay (its own limit, src/media/room.rs). */
const MAX_FRAME = 512 * 1024;
/** How far ahead of the audio clock decoded audio is scheduled. */
const AUDIO_DELAY_S = 0.06;

/** Reads the relay's group streams as they come, until the link closes. */
export async function readGroups(call, link) {
  const streams = link.incoming();
  try {
    for (;;) {
      const { value, done } = await streams.read();
      if (done) return;
      readGroup(call, value).catch((e) => groupLost(call, e));
    }
  } catch (e) { /* the link closed */ }
}

/**
 * A group the relay gave up on its way to us; the reset code says why (0x40: our link
 * could not take it in time; otherwise the publisher's uplink was late, the track ended
 * or we unsubscribed). Counted for the record: the relay says the same on the control
 * stream (`dropped`), which arrives even when the reset does not surface here.
 */
function groupLost(call, error) {
  if (!call.link) return; // the whole link went, not one group
  if (error instanceof WireError) return call.problem(`The relay sent a malformed group (${error.message}).`);
  const code = error?.streamErrorCode ?? 'none';
  call.stats.resets[code] = (call.stats.resets[code] || 0) + 1;
}

async function readGroup(call, stream) {
  const reader = stream.getReader();
  const group = new GroupReader(MAX_FRAME);
  let track = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    group.push(value);
    if (!group.header) continue;
    if (!track) {
      track = call.tracks.get(group.header.track);
      if (!track || (track.sequence !== undefined && group.header.sequence < track.sequence)) {
        reader.cancel().catch(() => {});
        return;
      }
      track.sequence = group.header.sequence;
    }
    for (let frame = group.nextFrame(); frame; frame = group.nextFrame()) onFrame(call, track, frame);
  }
}

function onFrame(call, track, frame) {
  if (track.kind === 'audio') return playAudio(call, track, frame);
  if (!track.decoder) {
    track.needKey = true;
    track.decoder = new VideoDecoder({
      output: (videoFrame) => {
        // A frame decoded after its track ended must not bring the tile back.
        const tile = call.tracks.has(track.id) ? call.tiles.forTrack(track, call.participants.get(track.participant)) : null;
        tile?.draw(videoFrame);
        const stats = call.stats;
        stats.decoded[track.participant] = (stats.decoded[track.participant] || 0) + 1;
        stats.sizes[track.participant] = [videoFrame.displayWidth, videoFrame.displayHeight];
        stats.firstFrameAt[track.participant] ??= performance.now();
        videoFrame.close();
      },
      error: () => { track.decoder = null; },
    });
    track.decoder.configure({ codec: track.config.codec || 'vp8', optimizeForLatency: true });
  }
  if (track.needKey && !frame.keyframe) return;
  track.needKey = false;
  try {
    track.decoder.decode(new EncodedVideoChunk({ type: frame.keyframe ? 'key' : 'delta', timestamp: frame.timestampUs, data: frame.payload }));
  } catch (e) {
    track.needKey = true;
  }
}

/**
 * The call's one AudioContext (remote voices, and the microphone where it is read by a
 * worklet). Browsers start an AudioContext only after a click: the join button makes it.
 */
export function audioContext(call) {
  call.audioContext ??= new AudioContext({ sampleRate: 48000 });
  return call.audioContext;
}

/** Remote audio plays through one AudioContext on the default output, so the echo canceller hears it. */
function playAudio(call, track, frame) {
  const ctx = audioContext(call);
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  if (!track.decoder) {
    track.decoder = new AudioDecoder({
      output: (data) => {
        const buffer = ctx.createBuffer(data.numberOfChannels, data.numberOfFrames, data.sampleRate);
        let energy = 0;
        for (let c = 0; c < data.numberOfChannels; c++) {
          const plane = new Float32Array(data.numberOfFrames);
          data.copyTo(plane, { planeIndex: c, format: 'f32-planar' });
          buffer.copyToChannel(plane, c);
          if (c === 0) for (const x of plane) energy += x * x;
        }
        const stats = call.stats;
        stats.audio[track.participant] = (stats.audio[track.participant] || 0) + 1;
        const rms = Math.sqrt(energy / data.numberOfFrames);
        stats.loudest[track.participant] = Math.max(stats.loudest[track.participant] || 0, rms);
        data.close();
        // A small jitter buffer: play a little behind, never in the past.
        const at = Math.max(ctx.currentTime + AUDIO_DELAY_S, track.playhead || 0);
        const source = ctx.createBufferSource();
        source.buffer = buffer;
        source.connect(ctx.destination);
        source.start(at);
        track.playhead = at + buffer.duration;
      },
      error: () => { track.decoder = null; },
    });
    const { sampleRate = 48000, numberOfChannels = 1 } = track.config;
    track.decoder.configure({ codec: 'opus', sampleRate, numberOfChannels });
  }
  try {
    track.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: frame.timestampUs, data: frame.payload }));
  } catch (e) { /* skip a frame the decoder refuses */ }
}
