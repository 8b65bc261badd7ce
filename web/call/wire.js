// The wire format of Floo's media protocol (src/media/PROTOCOL.md), the browser's half
// of src/media/wire.rs: QUIC variable-length integers, length-prefixed JSON control
// messages, and group streams (a header, then length-prefixed frames). Pure: bytes in,
// messages out, no I/O, so the same test vectors (tests/wire-vectors.json) check both.

/** The largest value a varint holds exactly here (2^53 - 1: a JavaScript number). */
export const VARINT_MAX = Number.MAX_SAFE_INTEGER;
export const FLAG_KEYFRAME = 0x01;

/** Why bytes were refused; `kind` is 'too-large' or 'malformed', as in WireError. */
export class WireError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** `v` as a QUIC variable-length integer (RFC 9000 §16). */
export function encodeVarint(v) {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`not a varint: ${v}`);
  if (v < 64) return Uint8Array.of(v);
  if (v < 16384) return Uint8Array.of(0x40 | (v >> 8), v & 0xff);
  if (v < 2 ** 30) return Uint8Array.of(0x80 | (v >>> 24), (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  const hi = Math.floor(v / 2 ** 32), lo = v >>> 0;
  return Uint8Array.of(0xc0 | (hi >>> 24), (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff,
    lo >>> 24, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff);
}

/** Reads a varint at `at`: [value, length], or null when `buf` ends inside it. */
export function readVarint(buf, at = 0) {
  if (at >= buf.length) return null;
  const len = 1 << (buf[at] >> 6);
  if (at + len > buf.length) return null;
  let v = buf[at] & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + buf[at + i];
  return [v, len];
}

export function concat(...parts) {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A control message: varint length, then its JSON. */
export function encodeControl(message) {
  const json = utf8.encode(JSON.stringify(message));
  return concat(encodeVarint(json.length), json);
}

/** The start of every group stream: which track, which group. */
export function encodeGroupHeader(track, sequence) {
  return concat(encodeVarint(track), encodeVarint(sequence));
}

/** One frame as a publisher sends it and the relay forwards it. */
export function encodeFrame({ keyframe, timestampUs, level }, payload) {
  const bytes = payload instanceof Uint8Array ? payload : new Uint8Array(payload);
  const ts = encodeVarint(Math.max(0, Math.round(timestampUs)));
  const body = concat(Uint8Array.of(keyframe ? FLAG_KEYFRAME : 0), ts, Uint8Array.of(Math.min(127, level)), bytes);
  return concat(encodeVarint(body.length), body);
}

/** Reads a frame's body (without its length prefix): its flags, time, level and payload. */
export function decodeFrame(body) {
  if (body.length < 1) throw new WireError('malformed', 'frame');
  const flags = body[0];
  if (flags & ~FLAG_KEYFRAME) throw new WireError('malformed', 'frame flags');
  const ts = readVarint(body, 1);
  if (!ts) throw new WireError('malformed', 'frame timestamp');
  const levelAt = 1 + ts[1];
  if (levelAt >= body.length) throw new WireError('malformed', 'frame level');
  const level = body[levelAt];
  if (level > 127) throw new WireError('malformed', 'frame level');
  return { keyframe: (flags & FLAG_KEYFRAME) !== 0, timestampUs: ts[0], level, payload: body.subarray(levelAt + 1) };
}

/** Collects bytes that arrive in pieces. */
class Buffer {
  constructor() {
    this.bytes = new Uint8Array(0);
  }

  push(chunk) {
    this.bytes = this.bytes.length ? concat(this.bytes, chunk) : chunk;
  }

  take(n) {
    const out = this.bytes.subarray(0, n);
    this.bytes = this.bytes.subarray(n);
    return out;
  }
}

/** An incremental reader of the control stream; `next()` gives whole messages. */
export class ControlReader {
  constructor(maxMessage) {
    this.buffer = new Buffer();
    this.maxMessage = maxMessage;
  }

  push(chunk) {
    this.buffer.push(chunk);
  }

  /** The next whole message, or null until one is here; throws a WireError. */
  next() {
    const len = readVarint(this.buffer.bytes, 0);
    if (!len) return null;
    if (len[0] > this.maxMessage) throw new WireError('too-large', `control message of ${len[0]} bytes`);
    if (this.buffer.bytes.length < len[1] + len[0]) return null;
    const bytes = this.buffer.take(len[1] + len[0]).subarray(len[1]);
    try {
      return JSON.parse(fromUtf8.decode(bytes));
    } catch (e) {
      throw new WireError('malformed', 'control message');
    }
  }
}

/** An incremental reader of a group stream: its header, then whole frames. */
export class GroupReader {
  constructor(maxFrame) {
    this.buffer = new Buffer();
    this.maxFrame = maxFrame;
    this.header = null;
  }

  push(chunk) {
    this.buffer.push(chunk);
    if (!this.header) {
      const track = readVarint(this.buffer.bytes, 0);
      const sequence = track && readVarint(this.buffer.bytes, track[1]);
      if (sequence) {
        this.header = { track: track[0], sequence: sequence[0] };
        this.buffer.take(track[1] + sequence[1]);
      }
    }
  }

  /** The next whole frame (decoded), or null until one is here; throws a WireError. */
  nextFrame() {
    if (!this.header) return null;
    const len = readVarint(this.buffer.bytes, 0);
    if (!len) return null;
    if (len[0] > this.maxFrame) throw new WireError('too-large', `frame of ${len[0]} bytes`);
    if (this.buffer.bytes.length < len[1] + len[0]) return null;
    return decodeFrame(this.buffer.take(len[1] + len[0]).subarray(len[1]));
  }

  /** Bytes received but not yet a whole frame (a finished stream must have none). */
  pending() {
    return this.buffer.bytes.length;
  }
}
