// The call's statistics, for the curious: per person received, their connection (as the
// relay sees it), the layer and rate of their video, the bitrate coming in, the depth
// and target of their voice's jitter buffer, and how long their voice and picture take
// from capture to being heard and seen. Capture times are stamped on the sender's clock,
// so across two machines these delays are estimates (they include the clocks' offset).

const median = (xs) => {
  if (!xs?.length) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const ms = (x) => (x == null || !Number.isFinite(x) ? '–' : `${Math.round(x)} ms`);

export function startStatsPanel(call, panel) {
  const body = panel.querySelector('tbody');
  const own = panel.querySelector('.own');
  let last = { at: performance.now(), bytes: {}, decoded: {} };
  const render = () => {
    const now = performance.now();
    const seconds = (now - last.at) / 1000 || 1;
    const s = call.stats;
    const rows = [];
    for (const [id, p] of call.participants) {
      const bytes = s.received[id]?.bytes || 0;
      const kbits = ((bytes - (last.bytes[id] || 0)) * 8) / seconds / 1000;
      const fps = ((s.decoded[id] || 0) - (last.decoded[id] || 0)) / seconds;
      const buffer = s.playout[id];
      const audio = median(s.audioDelays[id]?.slice(-25));
      const video = median(s.videoDelays[id]?.slice(-25));
      const quality = call.quality.get(id);
      const size = s.sizes[id];
      rows.push([
        p.name,
        quality ? `${quality.level}${quality.rtt_ms != null ? `, ${quality.rtt_ms} ms` : ''}` : '–',
        size ? `${size[0]}×${size[1]} at ${fps.toFixed(0)}/s` : '–',
        `${kbits.toFixed(0)} kbit/s`,
        buffer ? `${Math.round(buffer.depth)} / ${Math.round(buffer.target)} ms` : '–',
        ms(audio), ms(video),
        audio != null && video != null ? ms(video - audio) : '–',
        buffer ? `${Math.round(buffer.concealedMs)} ms` : '–',
      ]);
      last.bytes[id] = bytes;
      last.decoded[id] = s.decoded[id] || 0;
    }
    body.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement('tr');
      for (const text of cells) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }));
    own.textContent = `You: ${call.link ? `connected over ${call.link.kind === 'websocket' ? 'a WebSocket' : 'WebTransport'}` : 'not connected'}`
      + `${s.rtt != null ? `, round trip to the relay ${s.rtt} ms` : ''}.`;
    last.at = now;
  };
  setInterval(() => { if (panel.open) render(); }, 1000);
  panel.addEventListener('toggle', () => { if (panel.open) render(); });
}
