// The call's list of people: everyone in the call, searchable by name, raised hands first
// in the order they went up; and, for hosts, what they may do: ask someone (or everyone)
// to mute, turn a camera off, lower a hand, remove someone; let people waiting in the
// lobby in, or turn them away; and choose how the meeting admits people. The relay
// decides who may do what (src/media/PROTOCOL.md); this only offers it to hosts.

/** Rows listed at once; a search finds the others. */
const MAX_ROWS = 200;

function button(text, onClick, className = 'small') {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = className;
  b.textContent = text;
  b.addEventListener('click', onClick);
  return b;
}

export class People {
  /** `root`: the panel; `send(message)`: to the relay's control stream. */
  constructor(root, send) {
    this.root = root;
    this.send = send;
    this.people = new Map();
    this.host = false;
    this.waiting = [];
    this.settings = { ask_to_join: false, quiet_above: 10 };
    this.$ = (sel) => root.querySelector(sel);
    this.$('#people-search').addEventListener('input', () => this.render());
    this.$('#mute-all').addEventListener('click', () => this.send({ type: 'moderate', action: 'mute' }));
    this.$('#ask-to-join').addEventListener('change', (e) => this.changeSettings({ ask_to_join: e.target.checked }));
    this.$('#quiet-above').addEventListener('change', (e) => {
      const value = Math.max(0, Math.min(500, Number(e.target.value) || 0));
      this.changeSettings({ quiet_above: value });
    });
    root.addEventListener('toggle', () => this.render());
    this.pending = false;
  }

  changeSettings(change) {
    this.send({ type: 'settings', settings: { ...this.settings, ...change } });
  }

  /** Renders on the next frame, once however many changes came. */
  changed() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  setPeople(people) {
    this.people = people;
    this.changed();
  }

  setHost(host) {
    this.host = host;
    this.changed();
  }

  setWaiting(waiting) {
    this.waiting = waiting;
    this.changed();
  }

  setSettings(settings) {
    this.settings = settings;
    this.changed();
  }

  /** Everyone matching the search: raised hands first (in the order raised), then by name. */
  listed() {
    const query = this.$('#people-search').value.trim().toLocaleLowerCase();
    const everyone = [...this.people.values()].filter((p) => !query || p.name.toLocaleLowerCase().includes(query));
    const raised = everyone.filter((p) => p.state?.hand).sort((a, b) => (a.raised ?? Infinity) - (b.raised ?? Infinity));
    const others = everyone.filter((p) => !p.state?.hand).sort((a, b) => a.name.localeCompare(b.name));
    return [...raised, ...others];
  }

  render() {
    const count = this.people.size + 1;
    this.$('.people-count').textContent = `People (${count})${this.host && this.waiting.length ? ` · ${this.waiting.length} waiting` : ''}`;
    this.$('.host-tools').hidden = !this.host;
    this.$('#ask-to-join').checked = this.settings.ask_to_join;
    if (document.activeElement !== this.$('#quiet-above')) this.$('#quiet-above').value = String(this.settings.quiet_above);
    this.renderLobby();
    if (!this.root.open) return;
    const rows = this.listed();
    const list = this.$('#people-list');
    list.replaceChildren(...rows.slice(0, MAX_ROWS).map((p) => this.row(p)));
    const hidden = rows.length - Math.min(rows.length, MAX_ROWS);
    this.$('.people-more').hidden = hidden === 0;
    this.$('.people-more').textContent = `${hidden} more: search for a name to find them.`;
    this.$('.people-none').hidden = rows.length > 0;
  }

  row(p) {
    const li = document.createElement('li');
    li.dataset.participant = String(p.id);
    const name = document.createElement('span');
    name.className = 'person-name';
    name.textContent = p.name;
    const s = p.state || {};
    const badges = [p.host && 'host', s.hand && 'hand raised', s.muted && 'muted', s.camera_off && 'camera off',
      p.transport === 'websocket' && 'WebSocket'].filter(Boolean);
    const note = document.createElement('span');
    note.className = 'muted small';
    note.textContent = badges.length ? ` · ${badges.join(' · ')}` : '';
    if (s.hand) li.classList.add('hand');
    li.append(name, note);
    if (this.host && !p.host) {
      const actions = document.createElement('span');
      actions.className = 'person-actions';
      const act = (action) => () => this.send({ type: 'moderate', action, participant: p.id });
      if (!s.muted) actions.append(button('Ask to mute', act('mute')));
      if (!s.camera_off) actions.append(button('Turn camera off', act('camera_off')));
      if (s.hand) actions.append(button('Lower hand', act('lower_hand')));
      actions.append(button('Remove', () => {
        if (window.confirm(`Remove ${p.name} from this meeting? They will not be able to join it again.`)) act('remove')();
      }, 'small danger'));
      li.append(actions);
    }
    return li;
  }

  renderLobby() {
    const box = this.$('.lobby-waiting');
    box.hidden = !this.host || this.waiting.length === 0;
    if (box.hidden) return;
    this.$('.lobby-count').textContent = `Waiting to join (${this.waiting.length})`;
    this.$('#lobby-list').replaceChildren(...this.waiting.map((w) => {
      const li = document.createElement('li');
      li.dataset.waiter = String(w.id);
      const name = document.createElement('span');
      name.textContent = w.name;
      li.append(name,
        button('Let in', () => this.send({ type: 'moderate', action: 'admit', participant: w.id }), 'small primary'),
        button('Turn away', () => this.send({ type: 'moderate', action: 'deny', participant: w.id })));
      return li;
    }));
  }
}
