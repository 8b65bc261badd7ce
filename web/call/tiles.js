// The call's grid: one tile per participant (their camera, their name, state and
// connection), a large tile per shared screen, the active speaker outlined; a grid view
// and a speaker view (one main tile, the others in a strip); pinning someone; and the
// roster line. It tells the call whenever tile sizes change, so that each camera is
// received in the layer its tile needs.

const TRANSPORT_NAMES = { webtransport: 'WebTransport', websocket: 'WebSocket' };
const QUALITY_WORDS = { good: 'good connection', fair: 'fair connection', poor: 'poor connection' };

function makeTile(className) {
  const el = document.createElement('div');
  el.className = className;
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 360;
  const label = document.createElement('div');
  label.className = 'tile-label';
  el.append(canvas, label);
  const ctx = canvas.getContext('2d');
  return {
    el, canvas, label,
    draw(frame) {
      if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
        canvas.width = frame.displayWidth;
        canvas.height = frame.displayHeight;
      }
      ctx.drawImage(frame, 0, 0);
    },
  };
}

export class Tiles {
  /** `onLayout` runs (at most every 200 ms) when tiles change size or role. */
  constructor(grid, roster, onLayout) {
    this.grid = grid;
    this.rosterEl = roster;
    this.byParticipant = new Map();
    this.screens = new Map();
    this.view = 'grid';
    this.pinned = null;
    this.speakerId = null;
    let pending = null;
    this.layoutChanged = () => {
      if (pending) return;
      pending = setTimeout(() => { pending = null; onLayout(); }, 200);
    };
    if (typeof ResizeObserver === 'function') new ResizeObserver(this.layoutChanged).observe(grid);
  }

  /** Adds or updates a participant's tile (`quality`: the relay's word on their link). */
  participant(p, quality) {
    let tile = this.byParticipant.get(p.id);
    if (!tile) {
      tile = makeTile('tile');
      tile.el.dataset.participant = String(p.id);
      tile.quality = document.createElement('span');
      tile.quality.className = 'quality';
      tile.name = document.createElement('span');
      tile.pin = document.createElement('button');
      tile.pin.type = 'button';
      tile.pin.className = 'pin';
      tile.pin.addEventListener('click', () => this.onPin?.(p.id));
      tile.label.append(tile.quality, tile.name);
      tile.el.append(tile.pin);
      this.grid.append(tile.el);
      this.byParticipant.set(p.id, tile);
      this.arrange();
      this.layoutChanged();
    }
    const s = p.state || {};
    tile.name.textContent = `${p.name}${s.muted ? ' · muted' : ''}${s.hand ? ' · ✋' : ''}${s.camera_off ? ' · camera off' : ''}`;
    if (quality) {
      tile.quality.dataset.level = quality.level;
      tile.quality.title = `${QUALITY_WORDS[quality.level] || quality.level}${quality.rtt_ms != null ? ` (round trip ${quality.rtt_ms} ms)` : ''}`;
      tile.quality.setAttribute('aria-label', tile.quality.title);
    }
    tile.el.dataset.transport = p.transport || 'webtransport';
    tile.el.classList.toggle('muted', !!s.muted);
    tile.el.classList.toggle('camera-off', !!s.camera_off);
    tile.el.classList.toggle('hand', !!s.hand);
    return tile;
  }

  remove(id) {
    this.byParticipant.get(id)?.el.remove();
    this.byParticipant.delete(id);
    if (this.pinned === id) this.pinned = null;
    this.arrange();
    this.layoutChanged();
  }

  /** Where a video track is drawn: its owner's tile, or a screen tile of its own. */
  forTrack(track, owner) {
    if (track.kind !== 'screen') return this.byParticipant.get(track.participant);
    let tile = this.screens.get(track.id);
    if (!tile) {
      tile = makeTile('tile screen');
      tile.label.textContent = `${owner?.name || 'Someone'} is sharing their screen`;
      this.grid.prepend(tile.el);
      this.screens.set(track.id, tile);
      this.layoutChanged();
    }
    return tile;
  }

  dropScreen(trackId) {
    if (!this.screens.has(trackId)) return;
    this.screens.get(trackId).el.remove();
    this.screens.delete(trackId);
    this.layoutChanged();
  }

  speaking(participantId) {
    this.speakerId = participantId;
    for (const tile of this.byParticipant.values()) {
      tile.el.classList.toggle('speaking', Number(tile.el.dataset.participant) === participantId);
    }
    if (this.view === 'speaker') this.arrange();
  }

  /** The participant in the speaker view's main tile: the pinned one, else the speaker. */
  main() {
    if (this.pinned !== null && this.byParticipant.has(this.pinned)) return this.pinned;
    if (this.speakerId !== null && this.byParticipant.has(this.speakerId)) return this.speakerId;
    return this.byParticipant.keys().next().value ?? null;
  }

  /** How wide a participant's tile is drawn, in device pixels. */
  width(participantId) {
    const tile = this.byParticipant.get(participantId);
    return tile ? tile.el.getBoundingClientRect().width * (window.devicePixelRatio || 1) : 0;
  }

  setPinned(participantId) {
    this.pinned = participantId;
    this.arrange();
    this.layoutChanged();
  }

  setView(view) {
    this.view = view;
    this.grid.dataset.view = view;
    this.arrange();
    this.layoutChanged();
  }

  /** Marks the pinned and main tiles (the stylesheet lays them out). */
  arrange() {
    const main = this.view === 'speaker' ? this.main() : null;
    for (const [id, tile] of this.byParticipant) {
      const pinned = this.pinned === id;
      tile.el.classList.toggle('pinned', pinned);
      tile.el.classList.toggle('main', main === id);
      tile.pin.textContent = pinned ? 'Unpin' : 'Pin';
      tile.pin.setAttribute('aria-pressed', String(pinned));
    }
  }

  /** The roster line: who else is here (and who reaches the call over a WebSocket). */
  roster(participants, ownTransport) {
    const names = [...participants.values()].map((p) => (p.transport === 'websocket' ? `${p.name} (WebSocket)` : p.name));
    const others = names.length ? `With you: ${names.join(', ')}.` : 'Nobody else is in the call yet.';
    const via = ownTransport ? ` You are connected over ${TRANSPORT_NAMES[ownTransport]}.` : '';
    this.rosterEl.textContent = others + via;
    this.grid.dataset.count = String(participants.size + 1);
    this.layoutChanged();
  }

  /** Your own connection, as the relay sees it, on your own tile. */
  ownQuality(quality) {
    const self = this.grid.querySelector('.tile.self .tile-label');
    if (!self) return;
    self.dataset.level = quality.level;
    self.title = QUALITY_WORDS[quality.level] || quality.level;
  }

  clear() {
    for (const id of [...this.byParticipant.keys()]) this.remove(id);
    for (const id of [...this.screens.keys()]) this.dropScreen(id);
  }
}
