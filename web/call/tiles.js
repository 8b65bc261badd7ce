// The call's grid: one tile per participant (their camera, their name and state), a
// large tile per shared screen, the active speaker outlined, and the roster line.

const TRANSPORT_NAMES = { webtransport: 'WebTransport', websocket: 'WebSocket' };

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
  constructor(grid, roster) {
    this.grid = grid;
    this.rosterEl = roster;
    this.byParticipant = new Map();
    this.screens = new Map();
  }

  /** Adds or updates a participant's tile. */
  participant(p) {
    let tile = this.byParticipant.get(p.id);
    if (!tile) {
      tile = makeTile('tile');
      tile.el.dataset.participant = String(p.id);
      this.grid.append(tile.el);
      this.byParticipant.set(p.id, tile);
    }
    const s = p.state || {};
    tile.label.textContent = `${p.name}${s.muted ? ' · muted' : ''}${s.hand ? ' · ✋' : ''}${s.camera_off ? ' · camera off' : ''}`;
    tile.el.dataset.transport = p.transport || 'webtransport';
    tile.el.classList.toggle('muted', !!s.muted);
    tile.el.classList.toggle('camera-off', !!s.camera_off);
    tile.el.classList.toggle('hand', !!s.hand);
    return tile;
  }

  remove(id) {
    this.byParticipant.get(id)?.el.remove();
    this.byParticipant.delete(id);
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
    }
    return tile;
  }

  dropScreen(trackId) {
    this.screens.get(trackId)?.el.remove();
    this.screens.delete(trackId);
  }

  speaking(participantId) {
    for (const tile of this.byParticipant.values()) {
      tile.el.classList.toggle('speaking', Number(tile.el.dataset.participant) === participantId);
    }
  }

  /** The roster line: who else is here (and who reaches the call over a WebSocket). */
  roster(participants, ownTransport) {
    const names = [...participants.values()].map((p) => (p.transport === 'websocket' ? `${p.name} (WebSocket)` : p.name));
    const others = names.length ? `With you: ${names.join(', ')}.` : 'Nobody else is in the call yet.';
    const via = ownTransport ? ` You are connected over ${TRANSPORT_NAMES[ownTransport]}.` : '';
    this.rosterEl.textContent = others + via;
    this.grid.dataset.count = String(participants.size + 1);
  }

  clear() {
    for (const id of [...this.byParticipant.keys()]) this.remove(id);
    for (const id of [...this.screens.keys()]) this.dropScreen(id);
  }
}
