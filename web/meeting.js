// Starts Floo's meeting client (the ES modules under web/call/) on a meeting page. A
// classic script, so that htmx runs it again on every visit; the modules themselves
// load once and `start` runs per page.
(() => {
  const root = document.getElementById('call');
  if (!root || root.dataset.started) return;
  root.dataset.started = 'yes';
  // A click on "Join call" before the client has loaded is not lost: it joins once ready.
  const early = () => { root.dataset.joinRequested = 'yes'; };
  root.querySelector('#join-call')?.addEventListener('click', early, { once: true });
  import('/static/call/call.js')
    .then((client) => {
      root.querySelector('#join-call')?.removeEventListener('click', early);
      return client;
    })
    .then((client) => client.start(root))
    .catch((e) => {
      const status = document.getElementById('call-status');
      if (status) status.textContent = `The call could not load (${e.message}). Reload the page to try again.`;
    });
})();
