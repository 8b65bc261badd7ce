// The shared wire test vectors (tests/wire-vectors.json), checked against
// web/call/wire.js. `checkWireVectors` runs inside a page (it imports the module the
// page serves) and returns the failures; an empty list means every vector passed.

export async function checkWireVectors(vectors) {
  const wire = await import('/static/call/wire.js');
  const failures = [];
  const hex = (s) => Uint8Array.from(s.match(/../g) || [], (b) => parseInt(b, 16));
  const toHex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  const same = (what, got, want) => { if (got !== want) failures.push(`${what}: got ${got}, want ${want}`); };
  for (const { value, hex: h } of vectors.varints) {
    same(`varint ${value}`, toHex(wire.encodeVarint(value)), h);
    const [v, n] = wire.readVarint(hex(h), 0) || [];
    same(`read varint ${h}`, `${v}/${n}`, `${value}/${h.length / 2}`);
    if (wire.readVarint(hex(h).subarray(0, h.length / 2 - 1), 0) !== null && h.length > 2) failures.push(`a cut varint ${h} must wait for more`);
  }
  for (const { json, hex: h } of vectors.control) {
    same(`encode ${json}`, toHex(wire.encodeControl(JSON.parse(json))), h);
    const reader = new wire.ControlReader(1 << 16);
    const bytes = hex(h);
    for (let i = 0; i < bytes.length; i += 7) reader.push(bytes.subarray(i, i + 7)); // in pieces
    same(`decode ${json}`, JSON.stringify(reader.next()), json);
    same(`nothing after ${json}`, reader.next(), null);
  }
  for (const f of vectors.frames) {
    const encoded = wire.encodeFrame({ keyframe: f.keyframe, timestampUs: f.timestampUs, level: f.level }, hex(f.payload));
    same(`encode frame ${f.hex.slice(0, 16)}`, toHex(encoded), f.hex);
  }
  for (const g of vectors.groups) {
    const reader = new wire.GroupReader(1 << 20);
    for (const b of hex(g.hex)) reader.push(Uint8Array.of(b)); // byte by byte
    same('group header', JSON.stringify(reader.header), JSON.stringify({ track: g.track, sequence: g.sequence }));
    for (const index of g.frames) {
      const want = vectors.frames[index];
      const got = reader.nextFrame();
      same(`frame ${index}`, got && JSON.stringify([got.keyframe, got.timestampUs, got.level, toHex(got.payload)]),
        JSON.stringify([want.keyframe, want.timestampUs, want.level, want.payload]));
    }
    same('group rest', reader.pending(), 0);
  }
  for (const { why, body } of vectors.malformed_frames) {
    try { wire.decodeFrame(hex(body)); failures.push(`accepted a malformed frame (${why})`); } catch (e) {
      same(`malformed frame (${why})`, e.kind, 'malformed');
    }
  }
  const { limit, frame_hex, control_hex } = vectors.oversized;
  const group = new wire.GroupReader(limit);
  group.push(hex(frame_hex));
  try { group.nextFrame(); failures.push('accepted an oversized frame'); } catch (e) { same('oversized frame', e.kind, 'too-large'); }
  const control = new wire.ControlReader(limit);
  control.push(hex(control_hex));
  try { control.next(); failures.push('accepted an oversized control message'); } catch (e) { same('oversized control', e.kind, 'too-large'); }
  return failures;
}
