// Floo's page glue for live streams (htmx's SSE extension does the streaming).
//
// A chat stream sends each message as it now is: new, edited or deleted (an SSE id is
// the topic's event number, so a resumed stream brings edits and deletions too). One
// the page shows is replaced where it is; one older than the page's first is not
// shown here (an edit of a message further up); a new one is appended by htmx.
document.addEventListener('htmx:sseBeforeMessage', (event) => {
  const list = event.target;
  if (!list || list.id !== 'comments' || event.detail.type !== 'message') return;
  const incoming = new DOMParser().parseFromString(event.detail.data, 'text/html').body.firstElementChild;
  if (!incoming || !incoming.id) return;
  const shown = document.getElementById(incoming.id);
  const first = list.querySelector('.comment');
  const seq = Number(incoming.id.slice(1));
  if (shown) {
    event.preventDefault();
    shown.replaceWith(document.importNode(incoming, true));
    showMessageActions(list.closest('.chat'));
  } else if (first && seq < Number(first.id.slice(1))) {
    event.preventDefault();
  }
});

// A topic edited while its page is open: its new title and text, in place.
document.addEventListener('htmx:sseBeforeMessage', (event) => {
  if (event.detail.type !== 'topic') return;
  event.preventDefault();
  const fresh = new DOMParser().parseFromString(event.detail.data, 'text/html');
  for (const id of ['topic-title', 'topic-body']) {
    const now = document.getElementById(id);
    const next = fresh.getElementById(id);
    if (now && next) now.replaceWith(document.importNode(next, true));
  }
  const edited = document.getElementById('topic-edited');
  if (edited) edited.hidden = false;
});

// Edit and Delete on the messages that are the viewer's to edit or delete (messages are
// the same bytes for every reader; the chat panel says who is reading).
function showMessageActions(chat) {
  if (!chat) return;
  const me = chat.dataset.me;
  const moderator = chat.dataset.moderator === '1';
  for (const message of chat.querySelectorAll('.comment[data-author]')) {
    const mine = message.dataset.author === me;
    const actions = message.querySelector('.msg-actions');
    if (!actions) continue;
    actions.hidden = !(mine || moderator);
    const edit = actions.querySelector('.msg-edit');
    if (edit) edit.hidden = !mine;
  }
}
document.addEventListener('htmx:load', (event) => showMessageActions(event.target.closest?.('.chat') || document.querySelector('.chat')));

// After a message arrives: drop the empty-state line and keep the newest in view.
document.addEventListener('htmx:sseMessage', (event) => {
  const list = event.target;
  if (!list || list.id !== 'comments') return;
  const chat = list.closest('.chat');
  chat?.querySelector('.no-messages')?.remove();
  showMessageActions(chat);
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
function onPage() {
  fillTimeZone();
  showMessageActions(document.querySelector('.chat'));
  markUnread();
}
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', onPage);
else onPage();
document.addEventListener('htmx:load', fillTimeZone);

// New on the forum: the list is the same for every reader; the page holds what this
// member has read (topic → last message seen) and when they joined, and marks topics
// with messages after that ("3 new"), on load and whenever the live list is swapped.
function markUnread() {
  const list = document.getElementById('topic-list');
  if (!list || !list.dataset.reads) return;
  let reads = {};
  try { reads = JSON.parse(list.dataset.reads); } catch { return; }
  const joined = Number(list.dataset.joined || 0);
  for (const item of list.querySelectorAll('li.topic[data-topic]')) {
    const seq = Number(item.dataset.seq);
    const read = reads[item.dataset.topic];
    const fresh = read === undefined ? (seq > 0 && Number(item.dataset.activity) > joined ? seq : 0) : seq - read;
    item.classList.toggle('unread', fresh > 0);
    let badge = item.querySelector('.badge.new');
    if (fresh > 0) {
      if (!badge) {
        badge = document.createElement('span');
        badge.className = 'badge new';
        item.querySelector('a')?.after(' ', badge);
      }
      badge.textContent = `${fresh} new`;
    } else {
      badge?.remove();
    }
  }
}
document.addEventListener('htmx:afterSwap', (event) => {
  if (event.target && event.target.id === 'topic-list') markUnread();
});
document.addEventListener('htmx:load', markUnread);

// A request the server did not answer (a node restarting behind the proxy, the network
// gone) or answered with a server error: nothing is swapped — a proxy's empty 502 would
// otherwise replace the form, and what was typed with it — and the form says so, keeping
// what was typed, so that sending again is one click.
function notSent(form, why) {
  let note = form.querySelector('.not-sent');
  if (!note) {
    note = document.createElement('p');
    note.className = 'field-error not-sent';
    note.setAttribute('role', 'alert');
    form.querySelector('button[type=submit], button:not([type])')?.before(note);
    if (!note.isConnected) form.append(note);
  }
  note.textContent = `Not sent: ${why}. What you wrote is still here; try again.`;
}
// (Only forms: a link's error page is shown as it is.)
const formOf = (event) => {
  const form = event.detail.elt?.closest?.('form');
  return form?.isConnected ? form : null;
};
document.addEventListener('htmx:beforeSwap', (event) => {
  const status = event.detail.xhr?.status || 0;
  const form = formOf(event);
  if (status < 500 || !form) return;
  event.detail.shouldSwap = false;
  // Floo's own error page says why in its lead paragraph; a proxy's page says nothing useful.
  const page = new DOMParser().parseFromString(event.detail.xhr.responseText || '', 'text/html');
  const why = page.querySelector('.error-page .lead')?.textContent?.trim().replace(/\.$/, '');
  notSent(form, why || `the server could not answer (${status})`);
});
document.addEventListener('htmx:sendError', (event) => {
  const form = formOf(event);
  if (form) notSent(form, 'the server could not be reached');
});
document.addEventListener('htmx:afterRequest', (event) => {
  if (event.detail.successful) event.detail.elt?.closest?.('form')?.querySelector('.not-sent')?.remove();
});
