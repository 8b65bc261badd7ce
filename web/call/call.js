// Floo's meeting client: the lobby (camera and microphone preview), then a call through
// Floo's relay — capture → WebCodecs encode → group streams over WebTransport or a
// WebSocket → relay → decode → tiles and speakers. This module holds the call's state
// and the control protocol (src/media/PROTOCOL.md); the other modules do one job each:
// wire (bytes), transport (reaching the relay), capture and publish (sending), playout
// (receiving), tiles (the grid), support (what a browser needs).

import { ControlReader, encodeControl } from './wire.js';
import { connect as connectTransport } from './transport.js';
import { publishAudio, publishVideo, SCREEN_TRACK, VIDEO_LAYERS } from './publish.js';
import { audioContext, closeDecoding, forgetSpeaker, readGroups, resetVideoDecoder, stopRenderClock } from './playout.js';
import { Tiles } from './tiles.js';
import { unsupportedMessage } from './support.js';
import { captureMethod } from './capture.js';
import { startStatsPanel } from './stats.js';

const CLOSE = { NORMAL: 0, UNAUTHORIZED: 0x10, ROOM_FULL: 0x11, ENDED: 0x12, GOING_AWAY: 0x30 };
/** A tile at least this wide (device pixels) gets the large camera layer. */
const LARGE_TILE_PX = 400;
/** Server messages can be larger than the client's own (a welcome lists everyone). */
const MAX_SERVER_MESSAGE = 1 << 20;

/** A failure to join, with whether trying again may help. */
class JoinError extends Error {
  constructor(message, retryable) {
    super(message);
    this.retryable = retryable;
  }
}

export function start(root) {
  const $ = (sel) => root.querySelector(sel);
  const stats = {
    // Per remote participant: pictures painted and decoded, picture size, voice frames
    // decoded and their loudness, bytes received, jitter buffer, delays (ms).
    decoded: {}, decodedFrames: {}, sizes: {}, firstFrameAt: {}, audio: {}, loudest: {}, received: {},
    playout: {}, audioDelays: {}, videoDelays: {}, transits: {}, skippedPictures: 0,
    sent: {}, joinedAt: 0, reconnects: 0, closes: [], resets: {}, problems: [], transport: null, connectMs: null,
    capture: null, rtt: null, layers: {},
  };
  const call = {
    stream: null, link: null, writer: null, leaving: false,
    state: { muted: false, camera_off: false, screen: false, hand: false },
    self: null, participants: new Map(), tracks: new Map(), subscribed: new Set(),
    encoders: [], screenStream: null, audioContext: null, retry: 0, keyframeRequests: 0, stats,
    // Local ids of the layers a receiver asked a keyframe of; how late each voice is heard.
    keyframesWanted: new Set(), audioDelay: new Map(), quality: new Map(),
    // The old fixed 60 ms playout, for comparison only (benches/call_delay.rs).
    fixedPlayout: localStorage.getItem('floo.playout') === 'fixed',
    tiles: new Tiles($('#grid'), $('#roster'), () => chooseAllSubscriptions()),
    send(message) { call.writer?.write(encodeControl(message)).catch(() => {}); },
    problem(text) {
      stats.problems.push(text);
      status(text);
    },
  };
  window.__floo = {
    stats, call, killTransport: () => call.link?.close(999, 'test'),
    // Test hook: the longest concealed gap counts from now.
    measureAfresh: () => call.playoutNode?.then((node) => node.port.postMessage({ type: 'measure-afresh' })),
    // Test hook: a decoder failure on the video of `participant`.
    resetDecoder: (participant) => {
      for (const t of call.tracks.values()) if (t.participant === participant && t.kind !== 'audio' && t.decoder) resetVideoDecoder(call, t);
    },
  };

  function status(text, { retry = false, media = false } = {}) {
    $('#call-status').textContent = text;
    $('#call-retry').hidden = !retry;
    $('#media-retry').hidden = !media;
  }

  // -- lobby --
  const unsupported = unsupportedMessage();
  if (unsupported) {
    $('#call-support').textContent = unsupported;
    $('#call-support').hidden = false;
    $('#join-call').disabled = true;
  }
  captureMethod().then((method) => { stats.capture = method; });

  /** What the camera and microphone are asked for (`original`: no voice processing, for music). */
  const videoConstraints = (deviceId) => (
    { deviceId: deviceId ? { exact: deviceId } : undefined, width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } });
  const audioConstraints = (deviceId) => {
    const processing = !$('#original-sound').checked;
    // The browser's echo canceller needs remote audio played through the default output (see playout.js).
    return { deviceId: deviceId ? { exact: deviceId } : undefined, echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing };
  };

  async function preview() {
    // A newer preview (another device picked meanwhile) wins; an older one's devices close.
    const mine = (call.previews = (call.previews || 0) + 1);
    call.stream?.getTracks().forEach((t) => t.stop());
    const open = (constraints) => navigator.mediaDevices.getUserMedia(constraints);
    const video = videoConstraints($('#camera-select').value);
    const audio = audioConstraints($('#mic-select').value);
    let stream;
    let problem = null;
    try {
      stream = await open({ video, audio });
    } catch (e) {
      // One may work alone (a computer without a camera, say): use what there is.
      const [camera, mic] = await Promise.allSettled([open({ video }), open({ audio })]);
      stream = new MediaStream([camera, mic].filter((p) => p.status === 'fulfilled').flatMap((p) => p.value.getTracks()));
      const missing = camera.status === 'fulfilled' ? 'microphone' : mic.status === 'fulfilled' ? 'camera' : 'camera and microphone';
      problem = e.name === 'NotAllowedError'
        ? `you did not allow this page to use your ${missing}`
        : `your ${missing} cannot be opened (${e.message})`;
    }
    if (mine !== call.previews) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    call.stream = stream;
    call.mediaProblem = problem;
    if (problem) {
      status(stream.getTracks().length
        ? `Only part of your devices work: ${problem}.`
        : `Camera and microphone unavailable: ${problem}. You can still join and listen.`, { media: true });
    }
    $('#preview').srcObject = stream;
    $('#self-video').srcObject = stream;
    meter(stream);
    // Not waited for: joining needs the stream, not the list (Firefox can be slow to give it).
    listDevices().catch(() => {});
  }

  async function listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const selects = [
      [$('#camera-select'), 'videoinput'], [$('#mic-select'), 'audioinput'],
      [$('#call-camera-select'), 'videoinput'], [$('#call-mic-select'), 'audioinput'],
    ];
    for (const [select, kind] of selects) {
      const current = select.value;
      select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => new Option(d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${i + 1}`, d.deviceId)));
      if (current) select.value = current;
    }
    // In the call, the pickers show the devices in use.
    const using = (track) => track?.getSettings().deviceId;
    if (using(call.stream?.getVideoTracks()[0])) $('#call-camera-select').value = using(call.stream.getVideoTracks()[0]);
    if (using(call.stream?.getAudioTracks()[0])) $('#call-mic-select').value = using(call.stream.getAudioTracks()[0]);
  }

  let meterContext = null;
  function meter(stream) {
    const track = stream.getAudioTracks()[0];
    if (!track) return;
    meterContext?.close();
    meterContext = new AudioContext();
    const analyser = meterContext.createAnalyser();
    try {
      meterContext.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    } catch (e) {
      return; // a microphone this context cannot read: no meter, the call still works
    }
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
    status('Connecting…');
    let response;
    try {
      response = await fetch(root.dataset.ticketUrl, { method: 'POST', headers: { 'X-CSRF-Token': root.dataset.csrf } });
    } catch (e) {
      throw new JoinError(`Floo cannot be reached (${e.message}). Check your connection.`, true);
    }
    if (!response.ok) {
      const refusals = { 409: 'This meeting has ended.', 404: 'This meeting is not open to you (are you still a member of the team?).' };
      throw new JoinError(refusals[response.status] || `The server refused to let you join (${response.status}).`, !refusals[response.status]);
    }
    const ticket = await response.json();
    call.you = ticket.you;
    stats.relayPort = ticket.port;
    const started = performance.now();
    let link;
    stats.attempts = [];
    try {
      link = await connectTransport(ticket, undefined, stats.attempts);
    } catch (e) {
      const certificate = /certificate|cert/i.test(e.message);
      throw new JoinError(certificate
        ? `The call server's certificate was refused (${e.message}). Reload the page to get its current one.`
        : `The call server cannot be reached (${e.message}). A firewall may block it.`, true);
    }
    stats.transport = link.kind;
    stats.connectMs = Math.round(performance.now() - started);
    call.link = link;
    const control = await link.openControl();
    call.writer = control.writer;
    call.send({ type: 'state', state: call.state });
    readControl(control.readable, link);
    keepMeasuring(link);
    readGroups(call, link);
    link.closed.then((info) => closed(link, info));
    publish(link);
  }

  /** The round trip to the relay, every 2 s (for the stats panel). */
  function keepMeasuring(link) {
    const ping = () => {
      if (call.link !== link) return;
      call.pingNonce = Math.floor(Math.random() * 2 ** 31);
      call.pingAt = performance.now();
      call.send({ type: 'ping', nonce: call.pingNonce });
      setTimeout(ping, 2000);
    };
    ping();
  }

  async function closed(link, info) {
    if (call.link !== link) return;
    stopPublishing();
    call.link = null;
    call.writer = null;
    const code = info?.closeCode ?? -1;
    stats.closes.push({ code, reason: info?.reason ?? '', at: Math.round(performance.now()) });
    if (call.leaving) return;
    if (code === CLOSE.ENDED) {
      status(info.reason || 'The meeting has ended.');
      return showLobby();
    }
    if (code === CLOSE.UNAUTHORIZED || code === CLOSE.ROOM_FULL) {
      status(`${info.reason || 'The call refused you.'}`, { retry: true });
      return showLobby();
    }
    // A network blip or a server restart: come back by ourselves.
    reconnectSoon(info?.reason);
  }

  function reconnectSoon(reason) {
    const delay = Math.min(4000, 250 * 2 ** call.retry++);
    status(`Connection lost${reason ? ` (${reason})` : ''}; reconnecting…`, { retry: true });
    clearTimeout(call.reconnectTimer);
    call.reconnectTimer = setTimeout(async () => {
      if (call.leaving || call.link) return;
      try {
        resetRemote();
        await connect();
        stats.reconnects += 1;
        call.retry = 0;
      } catch (e) {
        if (e.retryable === false) {
          status(e.message);
          return showLobby();
        }
        reconnectSoon(e.message);
      }
    }, delay);
  }

  async function readControl(readable, link) {
    const reader = readable.getReader();
    const messages = new ControlReader(MAX_SERVER_MESSAGE);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        messages.push(value);
        for (let m = messages.next(); m; m = messages.next()) if (call.link === link) onControl(m);
      }
    } catch (e) {
      if (call.link === link && e.kind) {
        call.problem(`The relay sent a malformed message (${e.message}); reconnecting.`);
        link.close(0x20, 'malformed control message');
      }
    }
  }

  function onControl(m) {
    switch (m.type) {
      case 'welcome':
        call.self = m.you;
        stats.joinedAt = performance.now();
        if (call.mediaProblem) {
          const listening = !call.stream?.getTracks().length;
          status(listening
            ? `You joined to listen: ${call.mediaProblem}. Others can hear and see you once you allow it.`
            : `In the call, but ${call.mediaProblem}.`, { media: true });
        } else {
          status('');
        }
        for (const p of m.participants) if (p.id !== m.you) addParticipant(p);
        for (const t of m.tracks) addTrack(t);
        renderRoster();
        break;
      case 'joined': addParticipant(m.participant); break;
      case 'left': removeParticipant(m.participant); break;
      case 'track': addTrack(m.track); break;
      case 'track_ended': dropTrack(m.track); break;
      case 'state': {
        const p = call.participants.get(m.participant);
        if (p) {
          p.state = m.state;
          call.tiles.participant(p);
        }
        break;
      }
      case 'recording':
        $('#recording-indicator').hidden = !m.on;
        // A recording starts with a keyframe from everyone, so that its video starts at once.
        if (m.on) call.keyframeRequests += 1;
        break;
      case 'speaker':
        call.tiles.speaking(m.participant);
        chooseAllSubscriptions();
        break;
      case 'dropped': slowLink(); break;
      case 'keyframe':
        // A receiver lost a group of this layer: start a new one with a keyframe.
        call.keyframesWanted.add(m.track);
        stats.keyframesAsked = (stats.keyframesAsked || 0) + 1;
        break;
      case 'quality': {
        call.quality.set(m.participant, m);
        const p = call.participants.get(m.participant);
        if (p) call.tiles.participant(p, m);
        if (m.participant === call.self) call.tiles.ownQuality(m);
        break;
      }
      case 'pong':
        if (m.nonce === call.pingNonce) stats.rtt = Math.round(performance.now() - call.pingAt);
        break;
    }
  }

  // -- participants and tracks --
  function addParticipant(p) {
    if (p.id === call.self) return;
    call.participants.set(p.id, p);
    call.tiles.participant(p);
    renderRoster();
  }

  function removeParticipant(id) {
    call.participants.delete(id);
    call.tiles.remove(id);
    forgetSpeaker(call, id);
    for (const [trackId, t] of call.tracks) if (t.participant === id) dropTrack(trackId);
    renderRoster();
  }

  function resetRemote() {
    for (const id of [...call.participants.keys()]) removeParticipant(id);
    call.tiles.clear();
    call.tracks.clear();
    call.subscribed.clear();
  }

  function renderRoster() {
    call.tiles.roster(call.participants, call.link?.kind);
  }

  function dropTrack(id) {
    const t = call.tracks.get(id);
    if (t) resetTrack(t);
    call.tracks.delete(id);
    call.subscribed.delete(id);
    call.tiles.dropScreen(id);
  }

  function addTrack(t) {
    if (t.participant === call.self) return;
    call.tracks.set(t.id, { ...t });
    chooseSubscriptions(t.participant);
  }

  /**
   * Audio always; screens always; one camera layer per participant: the one its tile
   * needs (see `wantsLarge`), unless this link recently could not keep up (the relay
   * abandoned groups on the way), in which case the smaller until it has been calm.
   */
  function chooseSubscriptions(participant) {
    const mine = [...call.tracks.values()].filter((t) => t.participant === participant);
    const cameras = mine.filter((t) => t.kind === 'camera').sort((a, b) => a.layer - b.layer);
    const wantLayer = wantsLarge(participant) ? cameras[cameras.length - 1] : cameras[0];
    for (const t of mine) {
      const want = t.kind !== 'camera' || t === wantLayer;
      if (want && !call.subscribed.has(t.id)) { call.subscribed.add(t.id); call.send({ type: 'subscribe', track: t.id }); }
      if (!want && call.subscribed.has(t.id)) {
        call.subscribed.delete(t.id);
        call.send({ type: 'unsubscribe', track: t.id });
        resetTrack(t);
      }
    }
    stats.layers[participant] = wantLayer?.layer ?? null;
  }

  function chooseAllSubscriptions() {
    for (const id of call.participants.keys()) chooseSubscriptions(id);
  }

  /**
   * Whether a participant's camera is wanted in its large layer: when pinned, when it is
   * the main tile of the speaker view, or when its tile in the grid is large (the small
   * layer would look soft there); never while our link is congested.
   */
  function wantsLarge(participant) {
    if (performance.now() - (call.congestedAt || -1e9) < 15000) return false;
    if (call.tiles.pinned === participant) return true;
    if (call.tiles.view === 'speaker') return call.tiles.main() === participant;
    return call.tiles.width(participant) >= LARGE_TILE_PX;
  }

  /** A layer no longer received: its decoder and waiting pictures go. */
  function resetTrack(t) {
    closeDecoding(t);
    t.sequence = undefined;
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
      chooseAllSubscriptions();
      const slow = 'Your connection is slow: showing smaller video.';
      status(slow);
      // Try the larger layers again once the link has been calm for a while.
      setTimeout(() => {
        chooseAllSubscriptions();
        if ($('#call-status').textContent === slow && performance.now() - call.congestedAt >= 15000) status('');
      }, 15500);
    }
  }

  // -- publishing --
  // The camera's and the microphone's encoders are kept apart from the screen's, so that
  // either can be replaced on its own when the person picks another device in the call.
  const devices = { camera: null, mic: null };
  const deviceTrack = (kind) => (kind === 'camera' ? call.stream?.getVideoTracks()[0] : call.stream?.getAudioTracks()[0]);

  const starting = { camera: null, mic: null };
  /** Starts publishing the camera or the microphone, unless it is already (or being) published. */
  function publishDevice(kind, link) {
    const track = deviceTrack(kind);
    if (!track || !link || devices[kind]) return Promise.resolve();
    starting[kind] ??= (async () => {
      const stop = await (kind === 'camera' ? publishVideo(call, track, VIDEO_LAYERS, 'camera') : publishAudio(call, track));
      if (call.link === link) devices[kind] = stop;
      else stop(); // the link went while the encoder started
    })().finally(() => { starting[kind] = null; });
    return starting[kind];
  }

  function stopDevice(kind, withdraw) {
    devices[kind]?.(withdraw);
    devices[kind] = null;
  }

  async function publish(link) {
    const starts = [publishDevice('camera', link), publishDevice('mic', link)];
    // A screen shared before a reconnect is shared again.
    const screen = call.screenStream?.getVideoTracks()[0];
    if (screen) starts.push(publishScreen(screen).then((stop) => (call.link === link ? call.encoders.push(stop) : stop())));
    for (const started of await Promise.allSettled(starts)) {
      if (started.status === 'rejected') call.problem(`Others cannot see or hear you: ${started.reason?.message || started.reason}`);
    }
  }

  function stopPublishing() {
    stopDevice('camera', false);
    stopDevice('mic', false);
    for (const stop of call.encoders.splice(0)) stop();
  }

  /** Another camera or microphone, in the call: the others get it without a reconnect. */
  async function switchDevice(kind, deviceId) {
    const what = kind === 'camera' ? 'camera' : 'microphone';
    let fresh;
    try {
      const stream = await navigator.mediaDevices.getUserMedia(
        kind === 'camera' ? { video: videoConstraints(deviceId) } : { audio: audioConstraints(deviceId) });
      fresh = kind === 'camera' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
    } catch (e) {
      listDevices().catch(() => {});
      return call.problem(`That ${what} cannot be opened (${e.message}); still using the one before.`);
    }
    const old = deviceTrack(kind);
    call.stream ??= new MediaStream();
    if (old) {
      call.stream.removeTrack(old);
      old.stop();
    }
    call.stream.addTrack(fresh);
    $(kind === 'camera' ? '#camera-select' : '#mic-select').value = deviceId;
    $('#self-video').srcObject = call.stream;
    $('#preview').srcObject = call.stream;
    if (kind === 'mic') meter(call.stream);
    stats.deviceSwitches = (stats.deviceSwitches || 0) + 1;
    if (!call.link) return;
    await starting[kind]?.catch(() => {});
    stopDevice(kind, true);
    try {
      await publishDevice(kind, call.link);
    } catch (e) {
      call.problem(`Others cannot get your new ${what}: ${e.message}`);
    }
  }

  /** Asks for the camera and microphone again (after a refusal, or a device plugged in). */
  async function retryMedia() {
    call.previewing = preview();
    await call.previewing;
    if (call.link) {
      // Whatever was published before is replaced by what there is now.
      for (const kind of ['camera', 'mic']) {
        await starting[kind]?.catch(() => {});
        stopDevice(kind, true);
      }
      for (const started of await Promise.allSettled(['camera', 'mic'].map((kind) => publishDevice(kind, call.link)))) {
        if (started.status === 'rejected') call.problem(`Others cannot see or hear you: ${started.reason?.message || started.reason}`);
      }
    }
    if (!call.mediaProblem) status('');
  }

  // -- controls --
  function setState(change) {
    Object.assign(call.state, change);
    call.send({ type: 'state', state: call.state });
    $('#mute').textContent = call.state.muted ? 'Unmute' : 'Mute';
    $('#camera').textContent = call.state.camera_off ? 'Camera on' : 'Camera off';
    $('#hand').textContent = call.state.hand ? 'Lower hand' : 'Raise hand';
    $('#screen').textContent = call.state.screen ? 'Stop sharing' : 'Share screen';
    $('#self-tile').classList.toggle('muted', call.state.muted);
  }

  function publishScreen(track) {
    const s = track.getSettings();
    const layer = { id: SCREEN_TRACK, layer: 0, width: s.width || 1280, height: s.height || 720, bitrate: 1_200_000 };
    return publishVideo(call, track, [layer], 'screen').then((stop) => {
      const stopThis = () => {
        stop();
        if (call.stopScreenEncoder === stopThis) call.stopScreenEncoder = null;
      };
      call.stopScreenEncoder = stopThis;
      return stopThis;
    });
  }

  function stopScreen() {
    call.screenStream.getTracks().forEach((t) => t.stop());
    call.screenStream = null;
    const encoder = call.stopScreenEncoder;
    call.encoders = call.encoders.filter((stop) => stop !== encoder);
    encoder?.();
    call.send({ type: 'unannounce', id: SCREEN_TRACK });
    setState({ screen: false });
  }

  async function toggleScreen() {
    if (call.screenStream) return stopScreen();
    if (!navigator.mediaDevices.getDisplayMedia) return status('This browser cannot share its screen.');
    try {
      call.screenStream = await navigator.mediaDevices.getDisplayMedia({ video: { width: { max: 1280 }, height: { max: 720 }, frameRate: { max: 15 } } });
    } catch (e) {
      return status(`Screen sharing did not start: ${e.message}`);
    }
    const track = call.screenStream.getVideoTracks()[0];
    try {
      const link = call.link;
      const stop = await publishScreen(track);
      if (call.link === link) call.encoders.push(stop);
      else stop();
    } catch (e) {
      call.screenStream.getTracks().forEach((t) => t.stop());
      call.screenStream = null;
      return call.problem(`Your screen cannot be shared: ${e.message}`);
    }
    track.addEventListener('ended', () => call.screenStream && stopScreen());
    setState({ screen: true });
  }

  function showLobby() {
    $('#lobby').hidden = false;
    $('#in-call').hidden = true;
  }

  async function join() {
    // Made in the click that joins, so that the browser lets it play (and record).
    audioContext(call).resume().catch(() => {});
    call.leaving = false;
    call.retry = 0;
    call.state.muted = $('#join-muted').checked;
    call.state.camera_off = $('#join-camera-off').checked;
    $('#lobby').hidden = true;
    $('#in-call').hidden = false;
    setState({});
    // Someone who clicks before the camera and microphone are open joins with them.
    status('Opening your camera and microphone…');
    for (let waited; waited !== call.previewing;) {
      waited = call.previewing;
      await waited?.catch(() => {});
    }
    $('#self-video').srcObject = call.stream;
    try {
      await connect();
    } catch (e) {
      status(`Could not join the call: ${e.message}`, { retry: e.retryable !== false });
      showLobby();
    }
  }

  function retry() {
    if (call.link) return;
    clearTimeout(call.reconnectTimer);
    join();
  }

  function leave() {
    call.leaving = true;
    stopRenderClock(call);
    clearTimeout(call.reconnectTimer);
    stopPublishing();
    call.link?.close(CLOSE.NORMAL, 'left');
    call.link = null;
    resetRemote();
    status('');
    showLobby();
  }

  call.tiles.onPin = (participant) => call.tiles.setPinned(call.tiles.pinned === participant ? null : participant);
  $('#view').addEventListener('click', () => {
    const speaker = call.tiles.view !== 'speaker';
    call.tiles.setView(speaker ? 'speaker' : 'grid');
    $('#view').textContent = speaker ? 'Grid view' : 'Speaker view';
  });
  $('#join-call').addEventListener('click', join);
  $('#call-retry').addEventListener('click', retry);
  $('#camera-select').addEventListener('change', () => { call.previewing = preview(); });
  $('#mic-select').addEventListener('change', () => { call.previewing = preview(); });
  $('#original-sound').addEventListener('change', () => { call.previewing = preview(); });
  $('#call-camera-select').addEventListener('change', (e) => switchDevice('camera', e.target.value));
  $('#call-mic-select').addEventListener('change', (e) => switchDevice('mic', e.target.value));
  $('#media-retry').addEventListener('click', retryMedia);
  // Permission granted later (in the browser's site settings): publish at once.
  for (const name of ['camera', 'microphone']) {
    navigator.permissions?.query({ name }).then((p) => {
      p.addEventListener('change', () => { if (p.state === 'granted' && call.mediaProblem) retryMedia(); });
    }).catch(() => {});
  }
  $('#mute').addEventListener('click', () => setState({ muted: !call.state.muted }));
  $('#camera').addEventListener('click', () => setState({ camera_off: !call.state.camera_off }));
  $('#hand').addEventListener('click', () => setState({ hand: !call.state.hand }));
  $('#screen').addEventListener('click', toggleScreen);
  $('#leave-call').addEventListener('click', leave);
  window.addEventListener('pagehide', () => call.link?.close(CLOSE.NORMAL, 'left'));
  // Navigating away inside the page (htmx boost) must end the call and free the camera.
  document.body.addEventListener('htmx:beforeSwap', function done(event) {
    if (!event.detail.boosted) return;
    document.body.removeEventListener('htmx:beforeSwap', done);
    leave();
    call.stream?.getTracks().forEach((t) => t.stop());
    meterContext?.close();
  });
  startStatsPanel(call, $('#call-stats'));
  if (!unsupported) call.previewing = preview();
  if (root.dataset.joinRequested && !unsupported) join();
  return call;
}

