// Floo's meeting client: camera and microphone preview (the lobby), then a call through
// Floo's relay — WebCodecs encode → WebTransport group streams → relay → WebTransport →
// WebCodecs decode. The wire format is described in src/media/PROTOCOL.md.
// A classic script (not a module) so that htmx runs it again on every visit.

(() => {
const root = document.getElementById('call');
if (root && !root.dataset.started) {
  root.dataset.started = 'yes';
  start(root);
}

// ---- wire format ---------------------------------------------------------------

function varint(v) {
  if (v < 64) return [v];
  if (v < 16384) return [0x40 | (v >> 8), v & 0xff];
  if (v < 2 ** 30) return [0x80 | (v >>> 24), (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
  const hi = Math.floor(v / 2 ** 32), lo = v >>> 0;
  return [0xc0 | (hi >>> 24), (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff, lo >>> 24, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff];
}

/** Reads a varint at `at`; returns [value, length] or null when `buf` ends inside it. */
function readVarint(buf, at) {
  if (at >= buf.length) return null;
  const len = 1 << (buf[at] >> 6);
  if (at + len > buf.length) return null;
  let v = buf[at] & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + buf[at + i];
  return [v, len];
}

function concat(a, b) {
  if (!a.length) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function controlBytes(message) {
  const json = new TextEncoder().encode(JSON.stringify(message));
  return concat(new Uint8Array(varint(json.length)), json);
}

/** One frame as the relay forwards it: length, flags, timestamp, audio level, payload. */
function frameBytes(keyframe, timestampUs, level, payload) {
  const head = [keyframe ? 1 : 0, ...varint(Math.max(0, Math.round(timestampUs))), level];
  const body = new Uint8Array(head.length + payload.byteLength);
  body.set(head);
  body.set(new Uint8Array(payload), head.length);
  return concat(new Uint8Array(varint(body.length)), body);
}

// ---- the call ------------------------------------------------------------------

const CLOSE = { NORMAL: 0, UNAUTHORIZED: 0x10, ROOM_FULL: 0x11, ENDED: 0x12 };
const VIDEO_LAYERS = [
  { id: 1, layer: 0, width: 320, height: 180, bitrate: 150_000 },
  { id: 2, layer: 1, width: 640, height: 360, bitrate: 600_000 },
];
const AUDIO_TRACK = 3;
const SCREEN_TRACK = 4;
const GOP_FRAMES = 30; // a keyframe, hence a new group, every second at 30 fps
const AUDIO_GROUP_FRAMES = 10; // 200 ms of 20 ms Opus frames per audio group

function start(root) {
  const $ = (sel) => root.querySelector(sel);
  const ticketUrl = root.dataset.ticketUrl;
  const csrf = root.dataset.csrf;
  const stats = { decoded: {}, sizes: {}, firstFrameAt: {}, joinedAt: 0, reconnects: 0, closes: [], resets: {} };
  const call = {
    stream: null, transport: null, writer: null, leaving: false, state: { muted: false, camera_off: false, screen: false, hand: false },
    you: null, participants: new Map(), tracks: new Map(), tiles: new Map(), subscribed: new Set(),
    encoders: [], screenStream: null, audioContext: null, playhead: 0, retry: 0,
  };
  window.__floo = { stats, call, killTransport: () => call.transport && call.transport.close({ closeCode: 999, reason: 'test' }) };

  // -- lobby --
  async function preview() {
    const cameraId = $('#camera-select').value;
    const micId = $('#mic-select').value;
    call.stream?.getTracks().forEach((t) => t.stop());
    try {
      call.stream = await navigator.mediaDevices.getUserMedia({
        video: { deviceId: cameraId ? { exact: cameraId } : undefined, width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } },
        // The browser's echo canceller needs remote audio played through the default output (see playAudio).
        audio: { deviceId: micId ? { exact: micId } : undefined, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (e) {
      $('#call-status').textContent = `Camera or microphone unavailable: ${e.message}. You can still join and listen.`;
      call.stream = new MediaStream();
    }
    $('#preview').srcObject = call.stream;
    await listDevices();
    meter(call.stream);
  }

  async function listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [select, kind] of [[$('#camera-select'), 'videoinput'], [$('#mic-select'), 'audioinput']]) {
      const current = select.value;
      select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => new Option(d.label || `${kind} ${i + 1}`, d.deviceId)));
      if (current) select.value = current;
    }
  }

  let meterContext = null;
  function meter(stream) {
    const track = stream.getAudioTracks()[0];
    if (!track) return;
    meterContext?.close();
    meterContext = new AudioContext();
    const analyser = meterContext.createAnalyser();
    meterContext.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const tick = () => {
      if (meterContext.state === 'closed') return;
      analyser.getFloatTimeDomainData(samples);
      const rms = Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length);
      $('#mic-level').value = Math.min(1, rms * 4);
      requestAnimationFrame(tick);
    };
    tick();
  }

  // -- connection --
  async function connect() {
    $('#call-status').textContent = 'Connecting…';
    const response = await fetch(ticketUrl, { method: 'POST', headers: { 'X-CSRF-Token': csrf } });
    if (!response.ok) throw new Error(response.status === 409 ? 'This meeting has ended.' : `The server refused (${response.status}).`);
    const ticket = await response.json();
    call.you = ticket.you;
    stats.relayPort = ticket.port;
    const url = `https://${ticket.host || location.hostname}:${ticket.port}${ticket.path}?token=${encodeURIComponent(ticket.token)}`;
    const options = ticket.certHash ? { serverCertificateHashes: [{ algorithm: 'sha-256', value: new Uint8Array(ticket.certHash) }] } : {};
    const transport = new WebTransport(url, options);
    await transport.ready;
    call.transport = transport;
    const control = await transport.createBidirectionalStream();
    call.writer = control.writable.getWriter();
    send({ type: 'state', state: call.state });
    readControl(control.readable, transport);
    readGroups(transport);
    transport.closed.then((info) => closed(transport, info), (e) => closed(transport, { closeCode: -1, reason: e.message }));
    publish();
  }

  function send(message) {
    call.writer?.write(controlBytes(message)).catch(() => {});
  }

  async function closed(transport, info) {
    if (call.transport !== transport) return;
    stopPublishing();
    call.transport = null;
    call.writer = null;
    const code = info?.closeCode ?? -1;
    stats.closes.push({ code, reason: info?.reason ?? '', at: Math.round(performance.now()) });
    if (call.leaving || code === CLOSE.NORMAL && call.leaving) return;
    if (code === CLOSE.ENDED || code === CLOSE.UNAUTHORIZED || code === CLOSE.ROOM_FULL) {
      $('#call-status').textContent = info.reason || 'The call ended.';
      return showLobby();
    }
    // A network blip or a server restart: come back by ourselves.
    const delay = Math.min(4000, 250 * 2 ** call.retry++);
    $('#call-status').textContent = 'Connection lost; reconnecting…';
    setTimeout(async () => {
      try {
        resetRemote();
        await connect();
        stats.reconnects += 1;
        call.retry = 0;
      } catch (e) {
        closed(null, { closeCode: -1 });
      }
    }, delay);
  }

  async function readControl(readable, transport) {
    const reader = readable.getReader();
    let buf = new Uint8Array(0);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf = concat(buf, value);
        for (;;) {
          const len = readVarint(buf, 0);
          if (!len || buf.length < len[1] + len[0]) break;
          const message = JSON.parse(new TextDecoder().decode(buf.subarray(len[1], len[1] + len[0])));
          buf = buf.slice(len[1] + len[0]);
          if (call.transport === transport) onControl(message);
        }
      }
    } catch (e) { /* the transport closed */ }
  }

  function onControl(m) {
    switch (m.type) {
      case 'welcome':
        call.self = m.you;
        stats.joinedAt = performance.now();
        $('#call-status').textContent = '';
        for (const p of m.participants) if (p.id !== m.you) addParticipant(p);
        for (const t of m.tracks) addTrack(t);
        break;
      case 'joined': addParticipant(m.participant); break;
      case 'left': removeParticipant(m.participant); break;
      case 'track': addTrack(m.track); break;
      case 'track_ended': dropTrack(m.track); break;
      case 'state': {
        const p = call.participants.get(m.participant);
        if (p) { p.state = m.state; renderTile(p); }
        break;
      }
      case 'recording':
        $('#recording-indicator').hidden = !m.on;
        // A recording starts with a keyframe from everyone, so that its video starts at once.
        if (m.on) call.keyframeRequests = (call.keyframeRequests || 0) + 1;
        break;
      case 'speaker':
        for (const tile of call.tiles.values()) tile.el.classList.toggle('speaking', Number(tile.el.dataset.participant) === m.participant);
        break;
      case 'dropped': slowLink(); break;
    }
  }

  // -- participants and tiles --
  function addParticipant(p) {
    if (p.id === call.self) return;
    call.participants.set(p.id, p);
    renderTile(p);
    renderRoster();
  }

  function removeParticipant(id) {
    call.participants.delete(id);
    call.tiles.get(id)?.el.remove();
    call.tiles.delete(id);
    for (const [trackId, t] of call.tracks) if (t.participant === id) dropTrack(trackId);
    renderRoster();
  }

  function resetRemote() {
    for (const id of [...call.participants.keys()]) removeParticipant(id);
    call.tracks.clear();
    call.subscribed.clear();
  }

  function renderRoster() {
    const names = [...call.participants.values()].map((p) => p.name);
    $('#roster').textContent = names.length ? `With you: ${names.join(', ')}` : 'Nobody else is in the call yet.';
    $('#grid').dataset.count = String(call.participants.size + 1);
  }

  function renderTile(p) {
    let tile = call.tiles.get(p.id);
    if (!tile) {
      const el = document.createElement('div');
      el.className = 'tile';
      el.dataset.participant = String(p.id);
      const canvas = document.createElement('canvas');
      canvas.width = 640; canvas.height = 360;
      const label = document.createElement('div');
      label.className = 'tile-label';
      el.append(canvas, label);
      $('#grid').append(el);
      tile = { el, canvas, label, ctx: canvas.getContext('2d') };
      call.tiles.set(p.id, tile);
    }
    const s = p.state || {};
    tile.label.textContent = `${p.name}${s.muted ? ' · muted' : ''}${s.hand ? ' · ✋' : ''}${s.camera_off ? ' · camera off' : ''}`;
    tile.el.classList.toggle('muted', !!s.muted);
    tile.el.classList.toggle('camera-off', !!s.camera_off);
    tile.el.classList.toggle('hand', !!s.hand);
  }

  function screenTile(track) {
    const key = `screen:${track.id}`;
    let tile = call.tiles.get(key);
    if (!tile) {
      const el = document.createElement('div');
      el.className = 'tile screen';
      const canvas = document.createElement('canvas');
      const label = document.createElement('div');
      label.className = 'tile-label';
      label.textContent = `${call.participants.get(track.participant)?.name || 'Someone'} is sharing their screen`;
      el.append(canvas, label);
      $('#grid').prepend(el);
      tile = { el, canvas, label, ctx: canvas.getContext('2d') };
      call.tiles.set(key, tile);
    }
    return tile;
  }

  function dropTrack(id) {
    const t = call.tracks.get(id);
    t?.decoder?.close?.();
    call.tracks.delete(id);
    call.subscribed.delete(id);
    call.tiles.get(`screen:${id}`)?.el.remove();
    call.tiles.delete(`screen:${id}`);
  }

  function addTrack(t) {
    if (t.participant === call.self) return;
    call.tracks.set(t.id, { ...t });
    chooseSubscriptions(t.participant);
  }

  /**
   * Audio always; screens always; one camera layer per participant: the larger while the
   * grid is small, unless this link recently could not keep up with it (the relay
   * abandoned groups on the way), in which case the smaller until it has been calm.
   */
  function chooseSubscriptions(participant) {
    const mine = [...call.tracks.values()].filter((t) => t.participant === participant);
    const cameras = mine.filter((t) => t.kind === 'camera').sort((a, b) => a.layer - b.layer);
    const congested = performance.now() - (call.congestedAt || -1e9) < 15000;
    const wantLayer = call.participants.size <= 3 && !congested ? cameras[cameras.length - 1] : cameras[0];
    for (const t of mine) {
      const want = t.kind !== 'camera' || t === wantLayer;
      if (want && !call.subscribed.has(t.id)) { call.subscribed.add(t.id); send({ type: 'subscribe', track: t.id }); }
      if (!want && call.subscribed.has(t.id)) { call.subscribed.delete(t.id); send({ type: 'unsubscribe', track: t.id }); }
    }
  }

  // -- receiving --
  async function readGroups(transport) {
    const streams = transport.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await streams.read();
        if (done) return;
        readGroup(value).catch((e) => groupLost(e));
      }
    } catch (e) { /* closed */ }
  }

  /**
   * A group the relay gave up on its way to us; the reset code says why (0x40: our
   * link could not take it in time; otherwise the publisher's uplink was late, the track
   * ended or we unsubscribed). Counted for the record: the relay says the same on the
   * control stream (`dropped`), which arrives even when the reset does not surface here.
   */
  function groupLost(error) {
    if (!call.transport) return; // the whole transport went, not one group
    const code = error?.streamErrorCode ?? 'none';
    stats.resets[code] = (stats.resets[code] || 0) + 1;
  }

  /** The relay gave up a group because our link could not take it: step down if it keeps happening. */
  function slowLink() {
    stats.dropped = (stats.dropped || 0) + 1;
    const now = performance.now();
    call.losses = (call.losses || []).filter((t) => now - t < 5000);
    call.losses.push(now);
    if (call.losses.length >= 2 && now - (call.congestedAt || -1e9) > 5000) {
      call.congestedAt = now;
      stats.layerDowns = (stats.layerDowns || 0) + 1;
      for (const id of call.participants.keys()) chooseSubscriptions(id);
      const slow = 'Your connection is slow: showing smaller video.';
      $('#call-status').textContent = slow;
      // Try the larger layers again once the link has been calm for a while.
      setTimeout(() => {
        for (const id of call.participants.keys()) chooseSubscriptions(id);
        if ($('#call-status').textContent === slow && performance.now() - call.congestedAt >= 15000) {
          $('#call-status').textContent = '';
        }
      }, 15500);
    }
  }

  async function readGroup(stream) {
    const reader = stream.getReader();
    let buf = new Uint8Array(0);
    let header = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf = concat(buf, value);
      if (!header) {
        const a = readVarint(buf, 0); if (!a) continue;
        const b = readVarint(buf, a[1]); if (!b) continue;
        header = { track: a[0], sequence: b[0] };
        buf = buf.slice(a[1] + b[1]);
      }
      const track = call.tracks.get(header.track);
      if (!track) { reader.cancel(); return; }
      if (track.sequence !== undefined && header.sequence < track.sequence) { reader.cancel(); return; }
      track.sequence = header.sequence;
      for (;;) {
        const len = readVarint(buf, 0);
        if (!len || buf.length < len[1] + len[0]) break;
        const frame = buf.subarray(len[1], len[1] + len[0]);
        onFrame(track, frame);
        buf = buf.slice(len[1] + len[0]);
      }
    }
  }

  function onFrame(track, frame) {
    const keyframe = (frame[0] & 1) === 1;
    const ts = readVarint(frame, 1);
    const payload = frame.subarray(1 + ts[1] + 1);
    if (track.kind === 'audio') return playAudio(track, payload, ts[0]);
    if (!track.decoder) {
      // A shared screen gets its own large tile; a camera draws into its owner's tile.
      const tile = () => {
        // A frame decoded after its track ended must not bring the tile back.
        if (!call.tracks.has(track.id)) return null;
        return track.kind === 'screen' ? screenTile(track) : call.tiles.get(track.participant);
      };
      track.needKey = true;
      track.decoder = new VideoDecoder({
        output: (videoFrame) => {
          const t = tile();
          if (t) {
            if (t.canvas.width !== videoFrame.displayWidth) { t.canvas.width = videoFrame.displayWidth; t.canvas.height = videoFrame.displayHeight; }
            t.ctx.drawImage(videoFrame, 0, 0);
          }
          stats.decoded[track.participant] = (stats.decoded[track.participant] || 0) + 1;
          stats.sizes[track.participant] = [videoFrame.displayWidth, videoFrame.displayHeight];
          stats.firstFrameAt[track.participant] ??= performance.now();
          videoFrame.close();
        },
        error: () => { track.decoder = null; },
      });
      track.decoder.configure({ codec: track.config.codec || 'vp8', optimizeForLatency: true });
    }
    if (track.needKey && !keyframe) return;
    track.needKey = false;
    try {
      track.decoder.decode(new EncodedVideoChunk({ type: keyframe ? 'key' : 'delta', timestamp: ts[0], data: payload }));
    } catch (e) { track.needKey = true; }
  }

  /** Remote audio plays through one AudioContext on the default output, so Chrome's echo canceller hears it. */
  function playAudio(track, payload, timestamp) {
    call.audioContext ??= new AudioContext({ sampleRate: 48000 });
    const ctx = call.audioContext;
    if (!track.decoder) {
      track.decoder = new AudioDecoder({
        output: (data) => {
          const buffer = ctx.createBuffer(data.numberOfChannels, data.numberOfFrames, data.sampleRate);
          for (let c = 0; c < data.numberOfChannels; c++) {
            const plane = new Float32Array(data.numberOfFrames);
            data.copyTo(plane, { planeIndex: c, format: 'f32-planar' });
            buffer.copyToChannel(plane, c);
          }
          data.close();
          // A small jitter buffer: play 60 ms behind, never in the past.
          const at = Math.max(ctx.currentTime + 0.06, track.playhead || 0);
          const source = ctx.createBufferSource();
          source.buffer = buffer;
          source.connect(ctx.destination);
          source.start(at);
          track.playhead = at + buffer.duration;
        },
        error: () => { track.decoder = null; },
      });
      track.decoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1 });
    }
    try { track.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp, data: payload })); } catch (e) { /* skip */ }
  }

  // -- publishing --
  function publish() {
    const video = call.stream?.getVideoTracks()[0];
    const audio = call.stream?.getAudioTracks()[0];
    if (video) {
      for (const l of VIDEO_LAYERS) {
        send({ type: 'announce', track: { id: l.id, kind: 'camera', layer: l.layer, config: { codec: 'vp8', codedWidth: l.width, codedHeight: l.height } } });
      }
      publishVideo(video, VIDEO_LAYERS, 'camera');
    }
    if (audio) {
      send({ type: 'announce', track: { id: AUDIO_TRACK, kind: 'audio', layer: 0, config: { codec: 'opus', sampleRate: 48000, numberOfChannels: 1 } } });
      publishAudio(audio);
    }
  }

  function stopPublishing() {
    for (const stop of call.encoders.splice(0)) stop();
  }

  /** A group publisher: a new unidirectional stream per group, frames written in order. */
  function groupWriter(trackId) {
    let sequence = Date.now(); // increases across reconnects
    let writer = null;
    let chain = Promise.resolve();
    return {
      start() {
        const previous = writer;
        const transport = call.transport;
        const seq = sequence++;
        writer = null;
        chain = chain.then(async () => {
          previous?.close().catch(() => {});
          if (!transport) return;
          const stream = await transport.createUnidirectionalStream();
          writer = stream.getWriter();
          await writer.write(new Uint8Array([...varint(trackId), ...varint(seq)]));
        }).catch(() => { writer = null; });
      },
      write(bytes) {
        chain = chain.then(() => writer?.write(bytes)).catch(() => { writer = null; });
      },
      close() { chain = chain.then(() => writer?.close()).catch(() => {}); },
    };
  }

  function publishVideo(track, layers, kind) {
    const processor = new MediaStreamTrackProcessor({ track });
    const reader = processor.readable.getReader();
    let stopped = false;
    const outs = layers.map((l) => {
      const group = groupWriter(l.id);
      const encoder = new VideoEncoder({
        output: (chunk) => {
          if (chunk.type === 'key') group.start();
          const data = new Uint8Array(chunk.byteLength);
          chunk.copyTo(data);
          group.write(frameBytes(chunk.type === 'key', chunk.timestamp, 127, data));
        },
        error: (e) => console.warn('video encoder', e),
      });
      encoder.configure({ codec: 'vp8', width: l.width, height: l.height, bitrate: l.bitrate, framerate: 30, latencyMode: 'realtime' });
      return { l, encoder, group, canvas: new OffscreenCanvas(l.width, l.height) };
    });
    let count = 0;
    let keyframeRequests = call.keyframeRequests || 0;
    (async () => {
      while (!stopped) {
        const { value: frame, done } = await reader.read();
        if (done) break;
        const paused = kind === 'camera' ? call.state.camera_off : false;
        if (!paused) {
          if ((call.keyframeRequests || 0) !== keyframeRequests) {
            keyframeRequests = call.keyframeRequests;
            count = 0;
          }
          const keyFrame = count % GOP_FRAMES === 0;
          for (const o of outs) {
            if (o.encoder.encodeQueueSize > 2) continue; // falling behind: drop rather than queue
            // Scale to the layer's size so every layer is a real picture of its own size.
            o.canvas.getContext('2d').drawImage(frame, 0, 0, o.l.width, o.l.height);
            const scaled = new VideoFrame(o.canvas, { timestamp: frame.timestamp });
            o.encoder.encode(scaled, { keyFrame });
            scaled.close();
          }
          count += 1;
        } else {
          count = 0; // the first frame after camera-on is a keyframe
        }
        frame.close();
      }
    })().catch(() => {});
    call.encoders.push(() => {
      stopped = true;
      reader.cancel().catch(() => {});
      for (const o of outs) { try { o.encoder.close(); } catch (e) { /* closed */ } o.group.close(); }
    });
  }

  function publishAudio(track) {
    const processor = new MediaStreamTrackProcessor({ track });
    const reader = processor.readable.getReader();
    let stopped = false;
    const group = groupWriter(AUDIO_TRACK);
    let level = 127;
    let count = 0;
    const encoder = new AudioEncoder({
      output: (chunk) => {
        if (count % AUDIO_GROUP_FRAMES === 0) group.start();
        count += 1;
        const data = new Uint8Array(chunk.byteLength);
        chunk.copyTo(data);
        group.write(frameBytes(true, chunk.timestamp, level, data));
      },
      error: (e) => console.warn('audio encoder', e),
    });
    encoder.configure({ codec: 'opus', sampleRate: 48000, numberOfChannels: 1, bitrate: 32000 });
    (async () => {
      while (!stopped) {
        const { value: data, done } = await reader.read();
        if (done) break;
        if (!call.state.muted) {
          // The level rides with the frames (RFC 6464 style: 0 loudest, 127 silent).
          const samples = new Float32Array(data.numberOfFrames);
          data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
          const rms = Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length) || 1e-7;
          level = Math.max(0, Math.min(127, Math.round(-20 * Math.log10(rms))));
          // Opus here is mono: feed the first channel.
          encoder.encode(data.numberOfChannels === 1 && data.sampleRate === 48000 ? data : mono48k(data, samples));
        }
        data.close();
      }
    })().catch(() => {});
    call.encoders.push(() => { stopped = true; reader.cancel().catch(() => {}); try { encoder.close(); } catch (e) { /* closed */ } group.close(); });
  }

  function mono48k(data, samples) {
    return new AudioData({ format: 'f32-planar', sampleRate: data.sampleRate, numberOfFrames: data.numberOfFrames, numberOfChannels: 1, timestamp: data.timestamp, data: samples });
  }

  // -- controls --
  function setState(change) {
    Object.assign(call.state, change);
    send({ type: 'state', state: call.state });
    $('#mute').textContent = call.state.muted ? 'Unmute' : 'Mute';
    $('#camera').textContent = call.state.camera_off ? 'Camera on' : 'Camera off';
    $('#hand').textContent = call.state.hand ? 'Lower hand' : 'Raise hand';
    $('#screen').textContent = call.state.screen ? 'Stop sharing' : 'Share screen';
    $('#self-tile').classList.toggle('muted', call.state.muted);
  }

  async function toggleScreen() {
    if (call.screenStream) {
      call.screenStream.getTracks().forEach((t) => t.stop());
      call.screenStream = null;
      send({ type: 'unannounce', id: SCREEN_TRACK });
      return setState({ screen: false });
    }
    try {
      call.screenStream = await navigator.mediaDevices.getDisplayMedia({ video: { width: { max: 1280 }, height: { max: 720 }, frameRate: { max: 15 } } });
    } catch (e) { return; }
    const track = call.screenStream.getVideoTracks()[0];
    const s = track.getSettings();
    const layer = { id: SCREEN_TRACK, layer: 0, width: s.width || 1280, height: s.height || 720, bitrate: 1_200_000 };
    send({ type: 'announce', track: { id: SCREEN_TRACK, kind: 'screen', layer: 0, config: { codec: 'vp8', codedWidth: layer.width, codedHeight: layer.height } } });
    publishVideo(track, [layer], 'screen');
    track.addEventListener('ended', () => call.screenStream && toggleScreen());
    setState({ screen: true });
  }

  function showLobby() {
    $('#lobby').hidden = false;
    $('#in-call').hidden = true;
  }

  async function join() {
    call.leaving = false;
    call.state.muted = $('#join-muted').checked;
    call.state.camera_off = $('#join-camera-off').checked;
    $('#lobby').hidden = true;
    $('#in-call').hidden = false;
    $('#self-video').srcObject = call.stream;
    setState({});
    try {
      await connect();
    } catch (e) {
      $('#call-status').textContent = `Could not join the call: ${e.message}`;
      showLobby();
    }
  }

  function leave() {
    call.leaving = true;
    stopPublishing();
    call.transport?.close({ closeCode: 0, reason: 'left' });
    call.transport = null;
    resetRemote();
    showLobby();
  }

  $('#join-call').addEventListener('click', join);
  $('#camera-select').addEventListener('change', preview);
  $('#mic-select').addEventListener('change', preview);
  $('#mute').addEventListener('click', () => setState({ muted: !call.state.muted }));
  $('#camera').addEventListener('click', () => setState({ camera_off: !call.state.camera_off }));
  $('#hand').addEventListener('click', () => setState({ hand: !call.state.hand }));
  $('#screen').addEventListener('click', toggleScreen);
  $('#leave-call').addEventListener('click', leave);
  window.addEventListener('pagehide', () => call.transport?.close({ closeCode: 0, reason: 'left' }));
  // Navigating away inside the page (htmx boost) must end the call and free the camera.
  document.body.addEventListener('htmx:beforeSwap', function done(event) {
    if (!event.detail.boosted) return;
    document.body.removeEventListener('htmx:beforeSwap', done);
    leave();
    call.stream?.getTracks().forEach((t) => t.stop());
    meterContext?.close();
  });
  preview();
}
})();
