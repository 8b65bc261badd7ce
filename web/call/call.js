// Floo's meeting client: the lobby (camera and microphone preview), then a call through
// Floo's relay — capture → WebCodecs encode → group streams over WebTransport or a
// WebSocket → relay → decode → tiles and speakers. This module holds the call's state
// and the control protocol (src/media/PROTOCOL.md); the other modules do one job each:
// wire (bytes), transport (reaching the relay), capture and publish (sending), playout
// (receiving), tiles (the grid), support (what a browser needs).

import { ControlReader, encodeControl } from './wire.js';
import { connect as connectTransport } from './transport.js';
import { publishAudio, publishVideo, SCREEN_TRACK, VIDEO_LAYERS } from './publish.js';
import { audioContext, closeDecoding, forgetSpeaker, readGroups, resetVideoDecoder, stopRenderClock, sweepDecoders } from './playout.js';
import { Tiles } from './tiles.js';
import { People } from './people.js';
import { unsupportedMessage } from './support.js';
import { captureMethod } from './capture.js';
import { startStatsPanel } from './stats.js';

const CLOSE = { NORMAL: 0, UNAUTHORIZED: 0x10, ROOM_FULL: 0x11, ENDED: 0x12, REMOVED: 0x13, DENIED: 0x14, GOING_AWAY: 0x30 };
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
    self: null, participants: new Map(), tracks: new Map(),
    // Video tracks (relay ids) that may arrive for what is on screen now.
    expected: new Set(),
    // Own video tracks anyone watches (the relay's `layers`); null: all of them.
    activeLayers: null, host: false,
    encoders: [], screenStream: null, audioContext: null, retry: 0, keyframeRequests: 0, stats,
    // Local ids of the layers a receiver asked a keyframe of; how late each voice is heard.
    keyframesWanted: new Set(), audioDelay: new Map(), quality: new Map(),
    // The old fixed 60 ms playout, for comparison only (benches/call_delay.rs).
    fixedPlayout: localStorage.getItem('floo.playout') === 'fixed',
    tiles: new Tiles($('#grid'), $('#roster'), () => sendView(), () => arranged(),
      { box: $('#pager'), prev: $('#page-prev'), next: $('#page-next'), label: $('#page-label') }),
    send(message) { call.writer?.write(encodeControl(message)).catch(() => {}); },
    problem(text) {
      stats.problems.push(text);
      status(text);
    },
  };
  call.people = new People($('#people'), (message) => call.send(message));
  /** Whether a group of this track is wanted: voices always (the relay chooses them), video
   * only for what is on screen. */
  call.accepts = (track) => track.kind === 'audio' || call.expected.has(track.id);
  window.__floo = {
    stats, call, killTransport: () => call.link?.close(999, 'test'),
    // Test hook: video and audio decoders open now, and tiles on screen.
    decoders: () => {
      const open = [...call.tracks.values()].filter((t) => t.decoder);
      return {
        video: open.filter((t) => t.kind !== 'audio').length,
        audio: open.filter((t) => t.kind === 'audio').length,
        tiles: call.tiles.tiles.size + call.tiles.screens.size,
      };
    },
    // Test hook: the longest concealed gap counts from now.
    measureAfresh: () => call.playoutNode?.then((node) => node.port.postMessage({ type: 'measure-afresh' })),
    // Test hook: a decoder failure on the video of `participant`.
    resetDecoder: (participant) => {
      for (const t of call.tracks.values()) if (t.participant === participant && t.kind !== 'audio' && t.decoder) resetVideoDecoder(call, t);
    },
  };

  function status(text, { retry = false, media = false } = {}) {
    $('#call-status').textContent = text;
    // What the person was told, in order (the status line shows only the latest).
    if (text) stats.said = [...(stats.said || []).slice(-49), text];
    $('#call-retry').hidden = !retry;
    $('#media-retry').hidden = !media;
    // Connection trouble is said at once to screen readers (the line itself is polite).
    if (text && retry) announce(text, true);
  }

  // -- screen readers --
  /**
   * Says `text` to screen readers (a visually hidden live region): politely, or at once
   * (`assertive`). Joins and leaves come in bursts in large meetings: names said within a
   * second and a half are said together ("Ana, Ben and 3 others joined the call").
   */
  function announce(text, assertive = false) {
    const region = $(assertive ? '#call-alert' : '#call-announce');
    if (!region) return;
    // A region says what changes in it: clear, then write, even for the same words twice.
    region.textContent = '';
    setTimeout(() => { region.textContent = text; }, 50);
    stats.announced = [...(stats.announced || []).slice(-49), text];
  }
  const comings = { joined: [], left: [], timer: null };
  function announceComing(kind, name) {
    comings[kind].push(name || 'Someone');
    clearTimeout(comings.timer);
    comings.timer = setTimeout(() => {
      for (const k of ['joined', 'left']) {
        const names = comings[k];
        if (!names.length) continue;
        const who = names.length <= 3
          ? names.join(names.length === 2 ? ' and ' : ', ')
          : `${names.slice(0, 2).join(', ')} and ${names.length - 2} others`;
        announce(`${who} ${k} the call`);
        comings[k] = [];
      }
    }, 1500);
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
      const refusals = {
        409: 'This meeting has ended.',
        404: 'This meeting is not open to you (are you still a member of the team?).',
        403: 'A host removed you from this meeting: you cannot join it again.',
      };
      // Floo's error page says why in its lead paragraph (a 403 is not always a removal).
      const page = new DOMParser().parseFromString(await response.text().catch(() => ''), 'text/html');
      const why = page.querySelector('.error-page .lead')?.textContent?.trim();
      throw new JoinError(why || refusals[response.status] || `The server refused to let you join (${response.status}).`, !refusals[response.status]);
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
    call.lastView = null;
    const control = await link.openControl();
    call.writer = control.writer;
    call.send({ type: 'state', state: call.state });
    readControl(control.readable, link);
    keepMeasuring(link);
    readGroups(call, link);
    link.closed.then((info) => closed(link, info));
    // Publishing starts with the welcome: someone waiting in the lobby sends nothing.
    call.published = null;
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
    // The relay says why before it closes (`closing`): the close itself may not arrive.
    if (call.closing && (info?.closeCode ?? -1) <= 0) info = { closeCode: call.closing.code, reason: call.closing.reason };
    call.closing = null;
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
    if (code === CLOSE.REMOVED || code === CLOSE.DENIED) {
      status(`${info.reason || 'A host removed you from this meeting.'}`);
      $('#join-call').disabled = true;
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
        call.host = !!m.host;
        call.people.setHost(call.host);
        call.people.setSettings(m.settings || call.people.settings);
        stats.joinedAt = performance.now();
        stats.total = m.total;
        if (m.quiet && !call.joinedOnce && !(call.state.muted && call.state.camera_off)) {
          // A large meeting: newcomers come in muted and with the camera off.
          setState({ muted: true, camera_off: true });
          call.quietNote = `This meeting is large (${m.total} people): you joined muted with your camera off. Unmute when you want to speak.`;
        }
        call.joinedOnce = true;
        if (call.mediaProblem) {
          const listening = !call.stream?.getTracks().length;
          status(listening
            ? `You joined to listen: ${call.mediaProblem}. Others can hear and see you once you allow it.`
            : `In the call, but ${call.mediaProblem}.`, { media: true });
        } else {
          status(call.quietNote || '');
          call.quietNote = null;
        }
        for (const p of m.participants) if (p.id !== m.you) addParticipant(p);
        for (const t of m.tracks) addTrack(t);
        renderRoster();
        sendView();
        if (call.published !== call.link) {
          call.published = call.link;
          publish(call.link);
        }
        break;
      case 'waiting':
        status('This meeting asks people to wait: a host has been told you are here and will let you in.');
        break;
      case 'lobby':
        if (call.host && m.waiting.length > (call.people.waiting?.length || 0)) {
          const newest = m.waiting[m.waiting.length - 1];
          status(`${newest.name} is waiting to join. Let them in from the list of people.`);
        }
        call.people.setWaiting(m.waiting);
        break;
      case 'settings':
        call.people.setSettings(m.settings);
        break;
      case 'layers': {
        // Which of our video tracks anyone watches: the others are not encoded. A layer
        // that comes back starts with a keyframe.
        const active = new Set(m.active);
        for (const id of active) if (call.activeLayers && !call.activeLayers.has(id)) call.keyframesWanted.add(id);
        call.activeLayers = active;
        break;
      }
      case 'moderated': onModerated(m); break;
      case 'closing':
        call.closing = { code: m.code, reason: m.reason };
        call.link?.close(CLOSE.NORMAL, 'closing');
        break;
      case 'joined':
        addParticipant(m.participant);
        if (m.participant.id !== call.self) announceComing('joined', m.participant.name);
        break;
      case 'left':
        announceComing('left', call.participants.get(m.participant)?.name);
        removeParticipant(m.participant);
        break;
      case 'track': addTrack(m.track); break;
      case 'track_ended': dropTrack(m.track); break;
      case 'state': {
        const p = call.participants.get(m.participant);
        if (p) {
          if (m.raised && !p.raised) announce(`${p.name} raised their hand`);
          p.state = m.state;
          p.raised = m.raised;
          call.tiles.participant(p);
          call.people.changed();
        }
        break;
      }
      case 'recording':
        if ($('#recording-indicator').hidden === m.on) announce(m.on ? 'The call is being recorded' : 'The recording stopped');
        $('#recording-indicator').hidden = !m.on;
        // A recording starts with a keyframe from everyone, so that its video starts at once.
        if (m.on) call.keyframeRequests += 1;
        break;
      case 'speaker':
        call.tiles.speaking(m.participant);
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
    call.tiles.participant(p, call.quality.get(p.id));
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
    call.expected.clear();
    call.activeLayers = null;
  }

  /** The roster line and the list of people: once per animation frame however much changed. */
  function renderRoster() {
    if (call.rosterPending) return;
    call.rosterPending = true;
    requestAnimationFrame(() => {
      call.rosterPending = false;
      call.tiles.roster(call.participants, call.link?.kind);
      call.people.setPeople(call.participants);
    });
  }

  function dropTrack(id) {
    const t = call.tracks.get(id);
    if (t) resetTrack(t);
    call.tracks.delete(id);
    call.expected.delete(id);
    call.tiles.dropScreen(id);
  }

  function addTrack(t) {
    if (t.participant === call.self) return;
    call.tracks.set(t.id, { ...t });
    // A screen shared, or a camera of someone on screen: the view says it.
    if (t.kind === 'screen' || call.tiles.shows(t.participant)) sendView();
  }

  /**
   * What this client shows, as the relay is told it (src/media/PROTOCOL.md, `view`): the
   * camera of each tile on screen in the layer it needs (see `wantsLarge`), every shared
   * screen, and in the speaker view (unless someone is pinned there) the latest speaker,
   * large, whom the relay switches to by itself. `expected`: the video tracks that may
   * arrive (the relay picks layers as `expectedTrack` does).
   */
  function currentView() {
    const speakerView = call.tiles.view === 'speaker';
    const main = speakerView ? call.tiles.main() : null;
    const followSpeaker = speakerView && call.tiles.pinned === null;
    const tiles = [];
    const expected = new Set();
    const layers = {};
    for (const id of call.tiles.onScreen()) {
      if (followSpeaker && id === main) continue; // the relay's latest speaker fills it
      const layer = wantsLarge(id) ? 1 : 0;
      tiles.push({ participant: id, kind: 'camera', layer });
      const track = expectedTrack(id, 'camera', layer);
      if (track) expected.add(track.id);
      layers[id] = track?.layer ?? null;
    }
    if (followSpeaker && main !== null) {
      const track = expectedTrack(main, 'camera', 1);
      if (track) expected.add(track.id);
      layers[main] = track?.layer ?? null;
    }
    for (const t of call.tracks.values()) {
      if (t.kind !== 'screen') continue;
      tiles.push({ participant: t.participant, kind: 'screen', layer: 0 });
      expected.add(t.id);
    }
    return { message: { type: 'view', tiles, speakers: followSpeaker ? 1 : 0, speaker_layer: 1 }, expected, layers };
  }

  /**
   * After every change of what is on screen, at once: video that no longer has a place
   * is not taken, and its decoder is closed (a page of 25 keeps 25 decoders at most).
   */
  function arranged() {
    const { expected, layers } = currentView();
    call.expected = expected;
    Object.assign(stats.layers, layers);
    for (const t of call.tracks.values()) {
      if (t.kind !== 'audio' && !expected.has(t.id) && t.decoder) resetTrack(t);
    }
  }

  /** Tells the relay what this client shows (when it changed). */
  function sendView() {
    if (!call.link) return;
    arranged();
    const { message } = currentView();
    const text = JSON.stringify(message);
    if (text === call.lastView) return;
    call.lastView = text;
    call.send(message);
  }

  /** The track the relay sends for a tile (as `track_for` in src/media/room.rs picks it). */
  function expectedTrack(participant, kind, layer) {
    const p = call.participants.get(participant);
    if (!p || (kind === 'camera' && p.state?.camera_off)) return null;
    const theirs = [...call.tracks.values()].filter((t) => t.participant === participant && t.kind === kind);
    const below = theirs.filter((t) => t.layer <= layer).sort((a, b) => b.layer - a.layer);
    return below[0] || theirs.sort((a, b) => a.layer - b.layer)[0] || null;
  }

  /** A host acted on us: do it, and say who. */
  function onModerated(m) {
    const by = m.by || 'A host';
    if (m.action === 'mute') {
      if (!call.state.muted) setState({ muted: true });
      status(`${by} asked you to mute: you are muted. Unmute when you want to speak.`);
      announce(`${by} asked you to mute: you are muted`, true);
    } else if (m.action === 'camera_off') {
      if (!call.state.camera_off) setState({ camera_off: true });
      status(`${by} turned your camera off. You can turn it on again.`);
    } else if (m.action === 'lower_hand') {
      if (call.state.hand) setState({ hand: false });
      status(`${by} lowered your hand.`);
    }
    stats.moderated = [...(stats.moderated || []), { action: m.action, by }];
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
      sendView();
      const slow = 'Your connection is slow: showing smaller video.';
      status(slow);
      // Try the larger layers again once the link has been calm for a while.
      setTimeout(() => {
        sendView();
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
    $('#mute').setAttribute('aria-pressed', String(call.state.muted));
    $('#camera').setAttribute('aria-pressed', String(call.state.camera_off));
    $('#hand').setAttribute('aria-pressed', String(call.state.hand));
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
    delete document.body.dataset.callPanel; // a phone's panel closes with the call
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
  // Keyboard shortcuts (listed under the controls): M, V, R and Shift+L, never while
  // typing (the chat, the search, a picker) or with Ctrl, Alt or Meta held.
  document.addEventListener('keydown', (event) => {
    if ($('#in-call').hidden || event.ctrlKey || event.altKey || event.metaKey || event.repeat) return;
    const target = event.target;
    if (target.closest?.('input, textarea, select, [contenteditable]')) return;
    const key = event.key.toLowerCase();
    if (key === 'm' && !event.shiftKey) {
      setState({ muted: !call.state.muted });
      announce(call.state.muted ? 'You are muted' : 'Your microphone is on', true);
    } else if (key === 'v' && !event.shiftKey) {
      setState({ camera_off: !call.state.camera_off });
      announce(call.state.camera_off ? 'Your camera is off' : 'Your camera is on', true);
    } else if (key === 'r' && !event.shiftKey) {
      setState({ hand: !call.state.hand });
      announce(call.state.hand ? 'Your hand is raised' : 'Your hand is lowered', true);
    } else if (key === 'l' && event.shiftKey) {
      leave();
    } else {
      return;
    }
    event.preventDefault();
  });
  // On a phone, the chat, the people and the rest (devices, statistics) are panels over
  // the call, one at a time (web/app.css lays them out; elsewhere the buttons are hidden).
  const fitPanel = () => {
    const top = root.querySelector('.call-controls').getBoundingClientRect().top;
    if (top > 0) document.body.style.setProperty('--call-bar', `${Math.ceil(window.innerHeight - top + 6)}px`);
  };
  window.addEventListener('resize', fitPanel);
  const openPanel = (name) => {
    fitPanel();
    if (name) document.body.dataset.callPanel = name;
    else delete document.body.dataset.callPanel;
    for (const toggle of root.querySelectorAll('.panel-toggle')) {
      toggle.setAttribute('aria-expanded', String(toggle.dataset.panel === name));
    }
    if (name === 'people') $('#people').open = true;
    if (name === 'chat') document.getElementById('comment-body')?.focus({ preventScroll: true });
  };
  for (const toggle of root.querySelectorAll('.panel-toggle')) {
    toggle.addEventListener('click', () => openPanel(document.body.dataset.callPanel === toggle.dataset.panel ? null : toggle.dataset.panel));
  }
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || !document.body.dataset.callPanel) return;
    const toggle = root.querySelector(`.panel-toggle[data-panel="${document.body.dataset.callPanel}"]`);
    openPanel(null);
    toggle?.focus();
  });
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
  // Decoders of voices no longer forwarded, and of video that stopped coming, are closed.
  setInterval(() => sweepDecoders(call), 1000);
  if (!unsupported) call.previewing = preview();
  if (root.dataset.joinRequested && !unsupported) join();
  return call;
}

