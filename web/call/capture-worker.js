// Where MediaStreamTrackProcessor exists only in workers (Safari), the page moves the
// track here and gets its frames back (see capture.js).

self.onmessage = async (event) => {
  const message = event.data || {};
  if (message.type === 'can') {
    self.postMessage({ type: 'can', processor: typeof MediaStreamTrackProcessor === 'function' });
    return;
  }
  if (message.type !== 'track') return;
  try {
    const reader = new MediaStreamTrackProcessor({ track: message.track }).readable.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      self.postMessage({ type: 'frame', frame: value }, [value]);
    }
  } finally {
    self.postMessage({ type: 'end' });
  }
};
