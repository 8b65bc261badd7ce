// Starts Floo's meeting client (the ES modules under web/call/) on a meeting page. A
// classic script, so that htmx runs it again on every visit; the modules themselves
// load once and `start` runs per page.
(() => {
  const root = document.getElementById('call');
  if (!root || root.dataset.started) return;
  root.dataset.started = 'yes';
  import('/static/call/call.js')
    .then((client) => client.start(root))
    .catch((e) => {
      const status = document.getElementById('call-status');
      if (status) status.textContent = `The call could not load (${e.message}). Reload the page to try again.`;
    });
})();
