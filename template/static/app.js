// The demo page: rooms, live messages, sign-in, and a connection indicator.
//
// Each room is rendered from a snapshot (messages + the id vector right after
// them) and the stream resumes from exactly that id, so nothing sent in
// between is missed or shown twice. ReconnectingEventSource resumes after
// disconnects; stream-reset and stream-error are shown to the user.
(function () {
  'use strict';

  const statusEl = document.getElementById('status');
  const noticeEl = document.getElementById('notice');
  const listEl = document.getElementById('messages');
  const presenceEl = document.getElementById('presence');
  const whoEl = document.getElementById('who');
  const labels = {
    connecting: 'connecting…',
    live: 'live',
    reconnecting: 'reconnecting…',
    reset: 'resynchronising…',
    error: 'stopped',
    closed: 'closed',
    forbidden: 'sign in to read this room',
  };

  const demo = {
    room: null,
    user: null,
    source: null,
    // Every state the indicator showed, for the end-to-end tests.
    states: [],
    // Who reads the current room (the users it names).
    here: new Set(),
  };
  window.demo = demo;

  function setStatus(state) {
    demo.states.push(state);
    statusEl.dataset.state = state;
    statusEl.textContent = labels[state] || state;
  }

  function notice(text, kind) {
    noticeEl.hidden = !text;
    noticeEl.textContent = text || '';
    noticeEl.className = 'notice' + (kind ? ' ' + kind : '');
  }

  // The app's JSON routes refuse with {"error": "<what to tell the user>"}.
  async function errorText(response) {
    const body = await response.json().catch(() => ({}));
    return body.error || response.status;
  }

  function addMessage(message, eventId) {
    const item = document.createElement('li');
    if (eventId) item.dataset.eventId = eventId;
    const author = document.createElement('b');
    author.textContent = message.author;
    const text = document.createElement('span');
    text.textContent = message.text;
    item.append(author, ' ', text);
    listEl.append(item);
    listEl.scrollTop = listEl.scrollHeight;
  }

  function render(history) {
    listEl.replaceChildren();
    history.messages.forEach((message) => addMessage(message));
  }

  function highlight(room) {
    document.querySelectorAll('#rooms .room').forEach((button) => {
      button.classList.toggle('current', button.dataset.room === room);
    });
  }

  function listen(room, lastEventId) {
    if (demo.source) demo.source.close();
    const path = '/events/' + encodeURIComponent(room);
    // sharedKey: the tabs of this app share one connection per room (the
    // browser allows about six per origin); tabs of different users do not.
    // presence: who else reads the room, at most one update a second.
    const options = {
      lastEventId: lastEventId,
      max_retry_time: 3000,
      sharedKey: 'chat user:' + (demo.user || ''),
      presence: true,
    };
    // Who is reading: the sign-in cookie, which the browser sends with
    // every request of this origin (the stream's too, EventSource or the
    // polyfill). No token in the URL, where access logs would keep it.
    const source = new ReconnectingEventSource(path, options);
    source.onstatechange = (state) => {
      setStatus(state);
      if (state === 'live') notice('');
    };
    source.addEventListener('message', (event) => {
      addMessage(JSON.parse(event.data), event.lastEventId);
    });
    source.addEventListener('stream-reset', async () => {
      // Some events could not be replayed (too old): reload the room.
      notice('Some messages were too old to replay; the room was reloaded.', 'info');
      const history = await fetchHistory(room);
      if (history) render(history);
    });
    source.onpresence = (event) => showPresence(JSON.parse(event.data));
    source.addEventListener('stream-error', (event) => {
      const error = JSON.parse(event.data);
      notice('The stream stopped: ' + error.text + (error.condition === 'forbidden' ? ' (sign in?)' : ''));
      setStatus('error');
    });
    demo.source = source;
  }

  // Who reads the room: `present` on open, then who joined and left.
  function showPresence(presence) {
    if (presence.present) demo.here = new Set(presence.present);
    (presence.joined || []).forEach((name) => demo.here.add(name));
    (presence.left || []).forEach((name) => demo.here.delete(name));
    const names = Array.from(demo.here).sort();
    const reading = presence.streams === 1 ? '1 reading' : presence.streams + ' reading';
    presenceEl.textContent = names.length ? reading + ': ' + names.join(', ') : reading;
  }

  async function fetchHistory(room) {
    const response = await fetch('/rooms/' + encodeURIComponent(room) + '/history');
    if (response.status === 403) {
      if (demo.source) demo.source.close();
      demo.source = null;
      listEl.replaceChildren();
      notice('“' + room + '” is private: sign in to read it.');
      setStatus('forbidden');
      return null;
    }
    if (!response.ok) {
      notice('Could not load “' + room + '” (' + response.status + ').');
      return null;
    }
    return response.json();
  }

  async function openRoom(room) {
    demo.room = room;
    highlight(room);
    notice('');
    setStatus('connecting');
    const history = await fetchHistory(room);
    if (!history || demo.room !== room) return;
    render(history);
    listen(room, history.last_event_id);
  }

  document.getElementById('rooms').addEventListener('click', (event) => {
    const button = event.target.closest('.room');
    if (button) openRoom(button.dataset.room);
  });

  document.getElementById('sign-in').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = event.target.elements.name.value.trim();
    const response = await fetch('/sign-in', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: name }),
    });
    if (!response.ok) {
      notice('Sign-in failed: ' + (await errorText(response)));
      return;
    }
    // The answer set the sign-in cookie (and carries a token for other
    // clients, which this page does not need).
    const session = await response.json();
    demo.user = session.user;
    whoEl.textContent = 'signed in as ' + session.user;
    openRoom(demo.room);
  });

  document.getElementById('send').addEventListener('submit', async (event) => {
    event.preventDefault();
    const form = event.target;
    const response = await fetch('/rooms/' + encodeURIComponent(demo.room) + '/messages', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ author: form.elements.author.value, text: form.elements.text.value }),
    });
    if (response.ok) {
      form.elements.text.value = '';
    } else {
      notice('Not sent: ' + (await errorText(response)));
    }
  });

  // The lobby's history came with the page: listen from right after it.
  const initial = JSON.parse(document.getElementById('initial-history').textContent);
  demo.room = initial.room;
  setStatus('connecting');
  listen(initial.room, initial.last_event_id);
})();
