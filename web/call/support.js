// What a browser needs to take part in a call, and what to tell someone whose browser
// lacks it (instead of a call that silently never starts).

const WEBCODECS = ['VideoEncoder', 'VideoDecoder', 'AudioEncoder', 'AudioDecoder', 'VideoFrame', 'AudioData', 'EncodedVideoChunk', 'EncodedAudioChunk'];

export const WORKING_BROWSERS = 'Calls work in current Chrome and Edge, in Firefox 140 or later and in Safari 26.4 or later.';

/** The features this browser lacks for calls (empty when it has them all). */
export function missingFeatures() {
  const missing = [];
  if (!window.isSecureContext) missing.push('a secure (https) connection to this page');
  const codecs = WEBCODECS.filter((name) => typeof window[name] !== 'function');
  if (codecs.length) missing.push(`WebCodecs (${codecs.join(', ')})`);
  if (typeof MediaStreamTrackProcessor !== 'function' && typeof AudioWorkletNode !== 'function') missing.push('AudioWorklet');
  if (typeof WebSocket !== 'function') missing.push('WebSocket');
  return missing;
}

/** The lobby's message for a browser that cannot join, or null when it can. */
export function unsupportedMessage() {
  const missing = missingFeatures();
  if (!missing.length) return null;
  return `This browser cannot join calls: it lacks ${missing.join(' and ')}. ${WORKING_BROWSERS}`;
}
