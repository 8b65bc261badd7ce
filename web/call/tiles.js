// The call's grid: a tile per participant on screen (their camera, or a name card when it
// is off; their name, state and connection), a large tile per shared screen, the active
// speaker outlined; a grid view in pages of 25 and a speaker view (one main tile, a strip
// of others); pinning someone. Only the people on screen have a tile: in a meeting of a
// hundred the page holds 25 canvases, not 100. It tells the call whenever what is on
// screen changes (people, page, sizes), so that the call can tell the relay what to send.

const TRANSPORT_NAMES = { webtransport: 'WebTransport', websocket: 'WebSocket' };
const QUALITY_WORDS = { good: 'good connection', fair: 'fair connection', poor: 'poor connection' };
/** Tiles on one page of the grid. */
export const PAGE_SIZE = 25;
/** Tiles in the speaker view's strip, beside the main one. */
const STRIP_SIZE = 12;
/** Someone who spoke this recently is put on the first page. */
const RECENT_SPEAKER_MS = 60_000;
/** Names listed in the roster line before "and N others". */
const ROSTER_NAMES = 12;

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

const initials = (name) => name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => [...w][0]).join('').toUpperCase();

export class Tiles {
  /**
   * `onLayout` runs (at most every 200 ms) when what is on screen changes, `onArranged` at
   * once after the tiles changed; `pager` holds the page buttons and label
   * (`{ box, prev, next, label }`).
   */
  constructor(grid, roster, onLayout, onArranged, pager) {
    this.onArranged = onArranged;
    this.grid = grid;
    this.rosterEl = roster;
    this.pager = pager;
    this.people = new Map(); // id -> participant
    this.qualities = new Map(); // id -> the relay's word on their link
    this.tiles = new Map(); // id -> tile, for those on screen only
    this.order = []; // ids, in the order they came; a new speaker moves to the front
    this.spoke = new Map(); // id -> when they last became the active speaker
    this.screens = new Map(); // screen track id -> tile
    this.view = 'grid';
    this.page = 0;
    this.pinned = null;
    this.speakerId = null;
    let pending = null;
    this.layoutChanged = () => {
      if (pending) return;
      pending = setTimeout(() => { pending = null; this.arrange(); onLayout(); }, 200);
    };
    pager?.prev.addEventListener('click', () => this.turn(-1));
    pager?.next.addEventListener('click', () => this.turn(1));
    if (typeof ResizeObserver === 'function') new ResizeObserver(this.layoutChanged).observe(grid);
  }

  /** Adds or updates a participant (`quality`: the relay's word on their link). */
  participant(p, quality) {
    const known = this.people.has(p.id);
    this.people.set(p.id, p);
    if (quality) this.qualities.set(p.id, quality);
    if (!known) {
      this.order.push(p.id);
      this.layoutChanged();
    } else if (!!this.tiles.get(p.id)?.el.classList.contains('camera-off') !== !!p.state?.camera_off) {
      this.layoutChanged(); // cameras off go last
    }
    const tile = this.tiles.get(p.id);
    if (tile) this.label(tile, p);
  }

  remove(id) {
    this.people.delete(id);
    this.qualities.delete(id);
    this.spoke.delete(id);
    this.order = this.order.filter((o) => o !== id);
    this.tiles.get(id)?.el.remove();
    this.tiles.delete(id);
    if (this.pinned === id) this.pinned = null;
    this.layoutChanged();
  }

  label(tile, p) {
    const s = p.state || {};
    tile.name.textContent = `${p.name}${s.muted ? ' · muted' : ''}${s.hand ? ' · ✋' : ''}${s.camera_off ? ' · camera off' : ''}`;
    tile.initials.textContent = initials(p.name);
    const quality = this.qualities.get(p.id);
    if (quality) {
      tile.quality.dataset.level = quality.level;
      tile.quality.title = `${QUALITY_WORDS[quality.level] || quality.level}${quality.rtt_ms != null ? ` (round trip ${quality.rtt_ms} ms)` : ''}`;
      // An image with a name, for screen readers.
      tile.quality.setAttribute('role', 'img');
      tile.quality.setAttribute('aria-label', tile.quality.title);
      tile.quality.removeAttribute('aria-hidden');
    }
    tile.el.dataset.transport = p.transport || 'webtransport';
    tile.el.classList.toggle('muted', !!s.muted);
    tile.el.classList.toggle('camera-off', !!s.camera_off);
    tile.el.classList.toggle('hand', !!s.hand);
    tile.el.classList.toggle('speaking', p.id === this.speakerId);
  }

  tileFor(id) {
    let tile = this.tiles.get(id);
    if (tile) return tile;
    tile = makeTile('tile');
    tile.el.dataset.participant = String(id);
    tile.quality = document.createElement('span');
    tile.quality.className = 'quality';
    // A coloured dot: hidden from screen readers until it has something to say.
    tile.quality.setAttribute('aria-hidden', 'true');
    tile.name = document.createElement('span');
    tile.initials = document.createElement('div');
    tile.initials.className = 'initials';
    tile.initials.setAttribute('aria-hidden', 'true');
    tile.pin = document.createElement('button');
    tile.pin.type = 'button';
    tile.pin.className = 'pin';
    tile.pin.addEventListener('click', () => this.onPin?.(id));
    tile.label.append(tile.quality, tile.name);
    tile.el.append(tile.initials, tile.pin);
    this.tiles.set(id, tile);
    return tile;
  }

  /** Everyone in the order tiles take: pinned, recent speakers, cameras on, cameras off. */
  arranged() {
    const now = performance.now();
    const rest = this.order.filter((id) => id !== this.pinned && this.people.has(id));
    // Recent speakers keep their order among themselves: tiles do not swap places every
    // time the speaker changes.
    const recent = rest.filter((id) => now - (this.spoke.get(id) ?? -Infinity) < RECENT_SPEAKER_MS);
    const others = rest.filter((id) => !recent.includes(id));
    const cameraOn = others.filter((id) => !this.people.get(id).state?.camera_off);
    const cameraOff = others.filter((id) => this.people.get(id).state?.camera_off);
    const pinned = this.pinned !== null && this.people.has(this.pinned) ? [this.pinned] : [];
    return [...pinned, ...recent, ...cameraOn, ...cameraOff];
  }

  pages() {
    return Math.max(1, Math.ceil(this.people.size / PAGE_SIZE));
  }

  turn(by) {
    this.page = Math.min(this.pages() - 1, Math.max(0, this.page + by));
    this.arrange();
    this.layoutChanged();
  }

  /** Who has a tile now, in order. */
  onScreen() {
    const everyone = this.arranged();
    if (this.view === 'speaker') {
      const main = this.main();
      return main === null ? [] : [main, ...everyone.filter((id) => id !== main).slice(0, STRIP_SIZE)];
    }
    this.page = Math.min(this.page, this.pages() - 1);
    return everyone.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE);
  }

  /** Whether a participant's tile is on screen. */
  shows(id) {
    return this.tiles.has(id);
  }

  /** Where a video track is drawn: its owner's tile (if on screen), or a screen tile of its own. */
  forTrack(track, owner) {
    if (track.kind !== 'screen') return this.tiles.get(track.participant);
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

  /** The relay's active speaker: outlined, and put on the first page if they are not. */
  speaking(participantId) {
    const before = this.speakerId;
    this.speakerId = participantId;
    for (const [id, tile] of this.tiles) tile.el.classList.toggle('speaking', id === participantId);
    if (participantId === null || participantId === undefined || !this.people.has(participantId)) return;
    const wasRecent = performance.now() - (this.spoke.get(participantId) ?? -Infinity) < RECENT_SPEAKER_MS;
    this.spoke.set(participantId, performance.now());
    // Tiles move when someone joins the recent speakers (who go first), or when the
    // speaker view's main tile changes; not whenever one recent speaker follows another.
    if (!wasRecent || (this.view === 'speaker' && before !== participantId)) this.layoutChanged();
  }

  /** The participant in the speaker view's main tile: the pinned one, else the speaker. */
  main() {
    if (this.pinned !== null && this.people.has(this.pinned)) return this.pinned;
    if (this.speakerId !== null && this.people.has(this.speakerId)) return this.speakerId;
    return this.arranged()[0] ?? null;
  }

  /** How wide a participant's tile is drawn, in device pixels (0: not on screen). */
  width(participantId) {
    const tile = this.tiles.get(participantId);
    return tile ? tile.el.getBoundingClientRect().width * (window.devicePixelRatio || 1) : 0;
  }

  setPinned(participantId) {
    this.pinned = participantId;
    if (participantId !== null) this.page = 0;
    this.arrange();
    this.layoutChanged();
  }

  setView(view) {
    this.view = view;
    this.grid.dataset.view = view;
    this.arrange();
    this.layoutChanged();
  }

  /** Puts the tiles of who is on screen in the grid, in order, and removes the others. */
  arrange() {
    const shown = this.onScreen();
    const main = this.view === 'speaker' ? this.main() : null;
    for (const [id, tile] of this.tiles) {
      if (!shown.includes(id)) {
        tile.el.remove();
        this.tiles.delete(id);
      }
    }
    for (const id of shown) {
      const tile = this.tileFor(id);
      const pinned = this.pinned === id;
      tile.el.classList.toggle('pinned', pinned);
      tile.el.classList.toggle('main', main === id);
      tile.pin.textContent = pinned ? 'Unpin' : 'Pin';
      tile.pin.setAttribute('aria-pressed', String(pinned));
      this.label(tile, this.people.get(id));
      this.grid.append(tile.el); // in order (moves an existing tile)
    }
    this.grid.dataset.count = String(Math.min(shown.length, PAGE_SIZE) + 1);
    if (this.pager) {
      const pages = this.pages();
      this.pager.box.hidden = this.view !== 'grid' || pages < 2;
      this.pager.label.textContent = `Page ${this.page + 1} of ${pages}`;
      this.pager.prev.disabled = this.page === 0;
      this.pager.next.disabled = this.page >= pages - 1;
    }
    this.onArranged?.();
  }

  /** The roster line: who else is here (and who reaches the call over a WebSocket). */
  roster(participants, ownTransport) {
    const names = [...participants.values()].map((p) => (p.transport === 'websocket' ? `${p.name} (WebSocket)` : p.name));
    const listed = names.slice(0, ROSTER_NAMES).join(', ');
    const more = names.length > ROSTER_NAMES ? ` and ${names.length - ROSTER_NAMES} others` : '';
    const others = names.length ? `With you: ${listed}${more}.` : 'Nobody else is in the call yet.';
    const via = ownTransport ? ` You are connected over ${TRANSPORT_NAMES[ownTransport]}.` : '';
    this.rosterEl.textContent = others + via;
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
    for (const id of [...this.people.keys()]) this.remove(id);
    for (const id of [...this.screens.keys()]) this.dropScreen(id);
    this.page = 0;
    this.arrange();
  }
}
