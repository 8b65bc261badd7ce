// How the call reaches the relay: native WebTransport over QUIC, or the same streams
// over a WebSocket (QMux: the vendored @moq/qmux, which presents the WebTransport API).
// The rest of the client sees one `Link` whichever won; see src/media/PROTOCOL.md for
// the strategy (WebTransport first with a head start, the WebSocket raced after it,
// the winner remembered per origin; Safari straight to the WebSocket).

import QmuxSession from '../vendor/qmux/index.js';

export const WEBTRANSPORT = 'webtransport';
export const WEBSOCKET = 'websocket';

/** How long WebTransport has on its own before the WebSocket is raced against it. */
export const HEAD_START_MS = 300;
/** How long a WebSocket win is remembered (then WebTransport gets its head start again). */
const REMEMBER_MS = 24 * 3600 * 1000;
const REMEMBER_KEY = 'floo.call-transport';
/** The application protocol after QMux's version prefix (src/media/websocket.rs). */
const PROTOCOL = 'floo-media';

/** Desktop Safari (not Chromium or Firefox on macOS, whose user agents also say Safari). */
export function isSafari() {
  const ua = navigator.userAgent;
  return /Version\/[\d.]+.*Safari\//.test(ua) && !/Chrome\/|Chromium\/|Edg\/|Firefox\//.test(ua);
}

/**
 * Which transports to try, in order. Safari's WebTransport stops refilling flow-control
 * credit mid-session (reported by public media-over-QUIC projects), which no race at
 * connect time would catch, so Safari uses the WebSocket only.
 */
export function plan() {
  if (!('WebTransport' in window) || isSafari()) return [WEBSOCKET];
  let remembered = null;
  try {
    remembered = JSON.parse(localStorage.getItem(REMEMBER_KEY) || 'null');
  } catch (e) { /* storage refused: nothing remembered */ }
  if (remembered?.kind === WEBSOCKET && Date.now() - remembered.at < REMEMBER_MS) return [WEBSOCKET, WEBTRANSPORT];
  return [WEBTRANSPORT, WEBSOCKET];
}

function remember(kind) {
  try {
    if (kind === WEBSOCKET) localStorage.setItem(REMEMBER_KEY, JSON.stringify({ kind, at: Date.now() }));
    else localStorage.removeItem(REMEMBER_KEY);
  } catch (e) { /* storage refused: nothing to remember */ }
}

/** The relay's address for one transport, from a media ticket. */
function address(kind, ticket) {
  const token = `token=${encodeURIComponent(ticket.token)}`;
  if (kind === WEBTRANSPORT) return `https://${ticket.host || location.hostname}:${ticket.port}${ticket.path}?${token}`;
  return `${ticket.webSocket || new URL('/media/ws', location.href).href}?${token}`;
}

function open(kind, ticket) {
  const url = address(kind, ticket);
  if (kind === WEBTRANSPORT) {
    const hashes = ticket.certHash ? { serverCertificateHashes: [{ algorithm: 'sha-256', value: new Uint8Array(ticket.certHash) }] } : {};
    return new WebTransport(url, hashes);
  }
  // QMux opens its WebSocket through the browser's native WebSocketStream where there is
  // one (Chromium); Chromium 156's renderer crashed ("Aw, Snap!") in most runs when such
  // a connection was reset, as a network drop does. Hidden for the constructor (which
  // opens the socket synchronously), QMux uses its ponyfill over a plain WebSocket, as it
  // does in Firefox and Safari: five resets out of five reconnected.
  const native = globalThis.WebSocketStream;
  try {
    globalThis.WebSocketStream = undefined;
    return new QmuxSession(url, { protocols: [PROTOCOL], versions: { [PROTOCOL]: ['qmux-02', 'qmux-01', 'qmux-00'] }, requireProtocol: true });
  } finally {
    globalThis.WebSocketStream = native;
  }
}

/** A connection to the relay, whichever transport carries it. */
export class Link {
  constructor(transport, kind) {
    this.transport = transport;
    this.kind = kind;
    // Settles once, with { closeCode, reason } (-1 when the connection broke without one).
    this.closed = transport.closed.then(
      (info) => ({ closeCode: info?.closeCode ?? 0, reason: info?.reason ?? '' }),
      (e) => ({ closeCode: e?.closeCode ?? -1, reason: e?.reason || e?.message || 'the connection broke' }),
    );
  }

  /** The control stream (the relay sees it with the first message written). */
  async openControl() {
    const stream = await this.transport.createBidirectionalStream({ sendOrder: Number.MAX_SAFE_INTEGER });
    return { writer: stream.writable.getWriter(), readable: stream.readable };
  }

  /** A new unidirectional stream for one group, sent in `sendOrder` (higher first). */
  async openGroup(sendOrder) {
    const stream = await this.transport.createUnidirectionalStream({ sendOrder });
    return stream.getWriter();
  }

  /** The relay's group streams, as they come. */
  incoming() {
    return this.transport.incomingUnidirectionalStreams.getReader();
  }

  close(closeCode, reason) {
    try {
      this.transport.close({ closeCode, reason });
    } catch (e) { /* already closed */ }
  }
}

/**
 * Connects by the plan: the first transport on its own for HEAD_START_MS (or until it
 * fails), then the next raced against it; the first ready wins and the other is closed.
 * Rejects with an Error whose `attempts` say why each transport failed.
 */
export function connect(ticket, order = plan(), attempts = []) {
  return new Promise((resolve, reject) => {
    const failures = [];
    const started = performance.now();
    const note = (kind, outcome, reason) => attempts.push({ kind, outcome, reason, ms: Math.round(performance.now() - started) });
    const pending = new Map();
    let winner = null;
    let next = 0;
    let timer = null;
    const startNext = () => {
      clearTimeout(timer);
      if (winner || next >= order.length) return;
      const kind = order[next++];
      let transport;
      try {
        transport = open(kind, ticket);
      } catch (e) {
        return failed(kind, e);
      }
      pending.set(kind, transport);
      note(kind, 'started');
      transport.ready.then(() => won(kind, transport), (e) => failed(kind, e));
      if (next < order.length) timer = setTimeout(startNext, HEAD_START_MS);
    };
    const won = (kind, transport) => {
      pending.delete(kind);
      if (winner) {
        note(kind, 'too late');
        return transport.close({ closeCode: 0, reason: 'another transport won' });
      }
      winner = kind;
      note(kind, 'won');
      clearTimeout(timer);
      for (const [other, loser] of pending) {
        note(other, 'abandoned');
        try { loser.close({ closeCode: 0, reason: 'another transport won' }); } catch (e) { /* not open yet */ }
      }
      pending.clear();
      if (order.length > 1) remember(kind);
      resolve(new Link(transport, kind));
    };
    const failed = (kind, e) => {
      pending.delete(kind);
      if (winner) return;
      note(kind, 'failed', e?.message || String(e));
      failures.push({ kind, reason: e?.message || String(e) });
      if (next < order.length) return startNext();
      if (pending.size === 0) {
        const error = new Error(failures.map((f) => `${f.kind === WEBTRANSPORT ? 'WebTransport' : 'WebSocket'}: ${f.reason}`).join('; '));
        error.attempts = failures;
        reject(error);
      }
    };
    startNext();
  });
}
