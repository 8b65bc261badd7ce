// Floo's page glue for live streams (htmx's SSE extension does the streaming).
//
// A stream resumes after the last message the page shows, so after a reconnect the
// server may send a message the page already has: drop it, keyed by its id (m<seq>).
document.addEventListener('htmx:sseBeforeMessage', (event) => {
  const id = event.detail && event.detail.lastEventId;
  if (id && document.getElementById(`m${id}`)) event.preventDefault();
});

// After a message arrives: drop the empty-state line and keep the newest in view.
document.addEventListener('htmx:sseMessage', (event) => {
  const list = event.target;
  if (!list || list.id !== 'comments') return;
  const chat = list.closest('.chat');
  chat?.querySelector('.no-messages')?.remove();
  // In a scrolling chat box, follow the conversation unless the reader scrolled up.
  const last = list.lastElementChild;
  const slack = 80 + (last ? last.offsetHeight : 0);
  if (list.scrollHeight - list.scrollTop - list.clientHeight < slack) list.scrollTop = list.scrollHeight;
});

// Scheduling a meeting: the browser's own time zone, if the field is still empty.
function fillTimeZone() {
  const zone = document.getElementById('time-zone');
  if (zone && !zone.value) zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}
// On first load, and on pages htmx swaps in (links are boosted: no new page load).
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', fillTimeZone);
else fillTimeZone();
document.addEventListener('htmx:load', fillTimeZone);
