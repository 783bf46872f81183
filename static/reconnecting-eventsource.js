/*
 * reconnecting-eventsource.js - part of eventstream-rocket (MIT OR Apache-2.0)
 *
 * ReconnectingEventSource: an EventSource that reconnects by itself and
 * resumes where it left off, with the API of the client bundled with
 * django-eventstream.
 *
 *   var es = new ReconnectingEventSource('/events/?channel=lobby', {
 *     max_retry_time: 3000,      // cap of the reconnection backoff, ms
 *     withCredentials: false,    // passed to the EventSource
 *     lastEventId: 'lobby:41',   // where to start (optional)
 *     eventSourceClass: EventSource, // e.g. EventSourcePolyfill
 *     headers: {...},            // passed on, for EventSourcePolyfill
 *     sharedKey: 'user:ann',     // opt in to one connection for all tabs
 *     renewCredentials: fn,      // see "Credentials that expire"
 *     presence: false,           // also receive `stream-presence` events
 *     debug: false,              // log what it does, in words (console)
 *   });
 *   es.addEventListener('message', function (e) { ... e.lastEventId, e.data ... });
 *
 * Standard members: url, readyState (CONNECTING 0, OPEN 1, CLOSED 2, also as
 * constants on the class and the instance), withCredentials, lastEventId
 * (read-only: the newest id seen, or the lastEventId option before that),
 * onopen, onmessage, onerror, addEventListener(type, fn),
 * removeEventListener(type, fn), close().
 * Every configuration key other than max_retry_time, lastEventId,
 * eventSourceClass, sharedKey, renewCredentials, presence and debug is
 * passed to the EventSource constructor.
 *
 * Credentials that expire:
 *   `url` may be a function returning the url, and `headers` (for
 *   EventSourcePolyfill) a function returning the headers: both are called
 *   before every connection, so a page can put its current token in them.
 *   When the server ends the stream because the credential expired
 *   (`stream-error` with condition `credentials-expired`), the source calls
 *   `renewCredentials()` once (it returns a promise: get a fresh token),
 *   stays in state "reconnecting" meanwhile, and then connects again from
 *   its last id. If the promise fails, or the next connection is refused
 *   as expired again, it gives up like any other stream-error. Without
 *   `renewCredentials` an expired credential is a stream-error at once.
 *
 * Extras:
 *   onreset(event)        called for a `stream-reset` event (the listed
 *                         channels could not be resumed: reload their state).
 *   onpresence(event)     called for a `stream-presence` event (with
 *                         `presence: true`, which adds `presence=1` to the
 *                         url): JSON with the channel's `streams` and
 *                         `users`, and `present` (on open), or `joined` and
 *                         `left` (since the previous one). It carries no id
 *                         and moves none.
 *   onstreamerror(event)  called for a `stream-error` event. The source is
 *                         closed for good before it runs (readyState CLOSED,
 *                         state "error"): the condition will not go away by
 *                         retrying.
 *   onstatechange(state)  called when `state` changes, with one of
 *                         "connecting"   the first connection is being made
 *                                        (reported once, right after the
 *                                        constructor's caller has run)
 *                         "live"         connected
 *                         "reconnecting" the connection failed or dropped;
 *                                        a reconnection is scheduled
 *                         "reset"        a stream-reset arrived; reported
 *                                        before onreset and the listeners
 *                                        run, followed by "live"
 *                         "closed"       close() was called
 *                         "error"        a stream-error arrived; closed
 *   state                 the current state, as above.
 *
 * Shared mode (opt in with `sharedKey`, a string):
 *   Browsers allow about 6 HTTP/1.1 connections per origin, so a seventh
 *   tab of an app would stall. With `sharedKey`, the tabs of one origin
 *   whose url (without its `lastEventId` and `token` parameters) and
 *   `sharedKey` match share one connection and one cursor. Put what tells
 *   users apart (their id) in `sharedKey`: tabs of different users must not
 *   share a stream.
 *   - One tab, the leader, chosen with the Web Locks API, holds the
 *     EventSource and forwards every event over a BroadcastChannel; the
 *     others (followers) dispatch what it forwards, as if it were theirs,
 *     and mirror its state. `es.role` says which: "leader", "follower", or
 *     "alone" (not sharing).
 *   - Every tab keeps its own cursor (the newest id it dispatched). A tab
 *     that joins asks the leader for what it forwarded since that cursor
 *     (every tab keeps the last 1,000 stored events it saw, so a new leader
 *     can serve them too); events at or before a tab's cursor are not
 *     dispatched to it again. A forwarded event that follows one the tab
 *     has not seen (a gap) is not dispatched: the tab asks again.
 *   - When the leader's tab closes, its lock is released and another tab
 *     takes over and resumes from its own cursor: nothing is lost or
 *     repeated.
 *   - Every event type a tab listens to (addEventListener) is announced to
 *     the group, and whichever tab leads listens to all of them: a type
 *     only a follower wants reaches it, across leader changes.
 *   - Where navigator.locks or BroadcastChannel is missing (insecure
 *     origins, old browsers), or the leader does not answer a joining tab
 *     within 5 s, or cannot serve its cursor, the tab connects on its own,
 *     as without `sharedKey`.
 *
 * How it works:
 *   - The id of every event the EventSource delivers is kept, including
 *     events seen only through `onmessage` and the protocol's own events
 *     (stream-open, stream-reset, keep-alive): the source always listens to
 *     those and to every type given to addEventListener.
 *   - When the EventSource reports an error, it is closed (the browser's own
 *     retry is not used) and a new one is made after a jittered exponential
 *     backoff, random(0.5..1) * min(max_retry_time, 250 ms * 2^attempt); the
 *     attempt count restarts after a successful open.
 *   - The id to resume from is sent as a `lastEventId` query parameter added
 *     to the url given, which works where headers cannot be set.
 *   - onopen runs on every transition to OPEN. onerror runs once per outage:
 *     when an open connection drops, or when the first connection fails;
 *     not for each failed retry.
 */
(function (root, factory) {
  'use strict';
  var api = factory(root);
  if (typeof module === 'object' && module && module.exports) {
    module.exports = api;
  }
  if (root) {
    root.ReconnectingEventSource = api.ReconnectingEventSource;
    root.EventSourceNotAvailableError = api.EventSourceNotAvailableError;
  }
})(
  typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this,
  function (global) {
    'use strict';

    var CONNECTING = 0;
    var OPEN = 1;
    var CLOSED = 2;
    var BASE_DELAY = 250;
    var DEFAULT_MAX_RETRY_TIME = 3000;
    // Types always listened to, so that their ids are kept.
    var TRACKED_TYPES = ['message', 'stream-open', 'stream-reset', 'stream-error', 'keep-alive', 'stream-presence'];
    // Our own options; everything else goes to the EventSource constructor.
    var OWN_OPTIONS = [
      'max_retry_time',
      'lastEventId',
      'eventSourceClass',
      'sharedKey',
      'renewCredentials',
      'presence',
      'debug',
      'headers',
    ];
    // Shared mode: events a leader keeps for tabs that join, and how long a
    // joining tab waits for the leader's answer.
    var SHARED_BACKLOG = 1000;
    var SHARED_WELCOME_TIMEOUT = 5000;

    function EventSourceNotAvailableError(message) {
      var error = new Error(message || 'EventSource not available: use a polyfill or pass eventSourceClass.');
      Object.setPrototypeOf(error, EventSourceNotAvailableError.prototype);
      error.name = 'EventSourceNotAvailableError';
      return error;
    }
    EventSourceNotAvailableError.prototype = Object.create(Error.prototype, {
      constructor: { value: EventSourceNotAvailableError, writable: true, configurable: true },
      name: { value: 'EventSourceNotAvailableError', writable: true, configurable: true },
    });

    function reportError(error) {
      if (typeof global.reportError === 'function') {
        global.reportError(error);
      } else {
        setTimeout(function () {
          throw error;
        }, 0);
      }
    }

    // Calls user code; an exception is reported but does not break us.
    function call(fn, thisArg, arg) {
      if (typeof fn !== 'function') return;
      try {
        fn.call(thisArg, arg);
      } catch (error) {
        reportError(error);
      }
    }

    function callListener(listener, thisArg, event) {
      if (typeof listener === 'function') {
        call(listener, thisArg, event);
      } else if (listener && typeof listener.handleEvent === 'function') {
        call(listener.handleEvent, listener, event);
      }
    }

    // A MessageEvent carries data; the EventSource's own open/error do not.
    function isMessageEvent(event) {
      return event != null && typeof event.data === 'string';
    }

    function withLastEventId(url, id) {
      return id ? withParameter(url, 'lastEventId', id) : url;
    }

    // `url` with `name=value` added to its query (before any fragment),
    // unless it is there already.
    function withParameter(url, name, value) {
      var pair = name + '=' + encodeURIComponent(value);
      var query = url.split('#')[0].split('?')[1] || '';
      if (query.split('&').indexOf(pair) !== -1) return url;
      var hash = '';
      var at = url.indexOf('#');
      if (at !== -1) {
        hash = url.slice(at);
        url = url.slice(0, at);
      }
      var separator = url.indexOf('?') === -1 ? '?' : '&';
      return url + separator + name + '=' + encodeURIComponent(value) + hash;
    }

    function ReconnectingEventSource(url, configuration) {
      if (!(this instanceof ReconnectingEventSource)) {
        throw new TypeError("Failed to construct 'ReconnectingEventSource': use 'new'.");
      }
      var config = configuration || {};
      var eventSourceClass = config.eventSourceClass || global.EventSource;
      if (typeof eventSourceClass !== 'function') {
        throw new EventSourceNotAvailableError();
      }
      var maxRetryTime = Number(config.max_retry_time);
      var innerConfig = {};
      for (var key in config) {
        if (Object.prototype.hasOwnProperty.call(config, key) && OWN_OPTIONS.indexOf(key) === -1) {
          innerConfig[key] = config[key];
        }
      }

      var urlOf = typeof url === 'function' ? url : null;
      if (config.presence === true) {
        // Part of the url, so tabs sharing a connection agree on it.
        if (urlOf) {
          var given = urlOf;
          urlOf = function () {
            return withParameter(String(given()), 'presence', '1');
          };
        } else {
          url = withParameter(String(url), 'presence', '1');
        }
      }
      this.url = String(urlOf ? urlOf() : url);
      this.withCredentials = Boolean(config.withCredentials);
      this.readyState = CONNECTING;
      this.state = 'connecting';
      this.onopen = null;
      this.onmessage = null;
      this.onerror = null;
      this.onreset = null;
      this.onpresence = null;
      this.onstreamerror = null;
      this.onstatechange = null;

      Object.defineProperty(this, '_', {
        value: {
          eventSourceClass: eventSourceClass,
          innerConfig: innerConfig,
          maxRetryTime: maxRetryTime >= 0 ? maxRetryTime : DEFAULT_MAX_RETRY_TIME,
          lastEventId: typeof config.lastEventId === 'string' ? config.lastEventId : '',
          listeners: {}, // type -> [listener]
          source: null, // the current EventSource
          forwarders: {}, // type -> listener on the current EventSource
          timer: null,
          attempt: 0,
          everOpened: false,
          reported: false, // onstatechange was called at least once
          urlOf: urlOf, // called before every connection, when given
          headers: config.headers, // an object, or a function of none
          renew: typeof config.renewCredentials === 'function' ? config.renewCredentials : null,
          renewing: false, // renewed since the last stream-open
          debug: Boolean(config.debug),
        },
      });

      this.role = 'alone';
      if (typeof config.sharedKey === 'string' && canShare()) {
        this._.shared = new SharedTab(this, sharedName(this.url, config.sharedKey));
      } else {
        this._connect();
      }
      // Report "connecting" once the caller has had the chance to set
      // onstatechange (right after this constructor's caller finishes).
      var self = this;
      Promise.resolve().then(function () {
        if (!self._.reported && self.state === 'connecting') {
          self._.reported = true;
          call(self.onstatechange, self, 'connecting');
        }
      });
    }

    ReconnectingEventSource.CONNECTING = CONNECTING;
    ReconnectingEventSource.OPEN = OPEN;
    ReconnectingEventSource.CLOSED = CLOSED;

    var proto = ReconnectingEventSource.prototype;
    proto.CONNECTING = CONNECTING;
    proto.OPEN = OPEN;
    proto.CLOSED = CLOSED;

    Object.defineProperty(proto, 'lastEventId', {
      configurable: true,
      enumerable: true,
      get: function () {
        return this._.lastEventId;
      },
    });

    proto.addEventListener = function (type, listener) {
      if (!listener) return;
      type = String(type);
      var listeners = this._.listeners;
      var fresh = !listeners[type];
      var list = listeners[type] || (listeners[type] = []);
      if (list.indexOf(listener) === -1) list.push(listener);
      this._forward(type);
      if (fresh && this._.shared) this._.shared.announceTypes();
    };

    proto.removeEventListener = function (type, listener) {
      var list = this._.listeners[String(type)];
      if (!list) return;
      var at = list.indexOf(listener);
      if (at !== -1) list.splice(at, 1);
    };

    proto.close = function () {
      if (this.readyState === CLOSED) return;
      this._stop();
      this._setState('closed');
    };

    // ---- internals --------------------------------------------------------

    proto._setState = function (state) {
      if (this.state === state) return;
      this.state = state;
      this._.reported = true;
      if (this._.shared) this._.shared.leaderState(state);
      call(this.onstatechange, this, state);
    };

    proto._dispatch = function (type, event) {
      var list = this._.listeners[type];
      if (!list) return;
      list = list.slice();
      for (var i = 0; i < list.length; i++) callListener(list[i], this, event);
    };

    proto._trackId = function (event) {
      var id = event && event.lastEventId;
      if (typeof id === 'string' && id !== '' && id !== 'error') this._.lastEventId = id;
    };

    // Stops the timer and the current EventSource; readyState CLOSED.
    proto._stop = function () {
      var inner = this._;
      this.readyState = CLOSED;
      if (inner.shared) {
        inner.shared.stop();
        inner.shared = null;
      }
      if (inner.timer !== null) {
        clearTimeout(inner.timer);
        inner.timer = null;
      }
      this._closeSource();
    };

    proto._closeSource = function () {
      var inner = this._;
      var source = inner.source;
      if (!source) return;
      inner.source = null;
      inner.forwarders = {};
      try {
        source.close();
      } catch (error) {
        reportError(error);
      }
    };

    // Listens on the current EventSource for `type`, once per type.
    proto._forward = function (type) {
      var inner = this._;
      var source = inner.source;
      if (!source || type === 'open' || type === 'error' || inner.forwarders[type]) return;
      var self = this;
      var forwarder = function (event) {
        if (self._.source !== source) return;
        self._onEvent(type, event);
      };
      inner.forwarders[type] = forwarder;
      source.addEventListener(type, forwarder);
    };

    proto._connect = function () {
      var inner = this._;
      var self = this;
      inner.timer = null;
      var source;
      if (inner.urlOf) this.url = String(inner.urlOf());
      var innerConfig = inner.innerConfig;
      if (inner.headers !== undefined) {
        innerConfig = {};
        for (var key in inner.innerConfig) innerConfig[key] = inner.innerConfig[key];
        innerConfig.headers = typeof inner.headers === 'function' ? inner.headers() : inner.headers;
      }
      this._log('connecting to ' + withoutToken(this.url) + (inner.lastEventId ? ' from ' + inner.lastEventId : ' from the start'));
      try {
        source = new inner.eventSourceClass(withLastEventId(this.url, inner.lastEventId), innerConfig);
      } catch (error) {
        // e.g. an invalid url: nothing to retry
        this._stop();
        this._setState('error');
        throw error;
      }
      inner.source = source;
      inner.forwarders = {};
      source.onopen = function (event) {
        if (self._.source !== source) return;
        if (isMessageEvent(event)) {
          self._onEvent('open', event); // an event named "open" sent by the server
          return;
        }
        self._onOpen(event);
      };
      source.onerror = function (event) {
        if (self._.source !== source) return;
        if (isMessageEvent(event)) {
          self._onEvent('error', event); // an event named "error" sent by the server
          return;
        }
        self._onError(event);
      };
      var types = TRACKED_TYPES.concat(Object.keys(inner.listeners));
      if (inner.shared) types = types.concat(inner.shared.groupTypes());
      for (var i = 0; i < types.length; i++) this._forward(types[i]);
    };

    // Says what the source does, in words, when `debug` is on.
    proto._log = function (text) {
      if (!this._.debug || !global.console) return;
      var line = 'ReconnectingEventSource: ' + text;
      if (typeof global.console.info === 'function') global.console.info(line);
      else if (typeof global.console.log === 'function') global.console.log(line);
    };

    proto._onOpen = function (event) {
      var inner = this._;
      inner.attempt = 0;
      inner.everOpened = true;
      this._log('connected');
      this.readyState = OPEN;
      this._setState('live');
      call(this.onopen, this, event);
      if (this.readyState === OPEN) this._dispatch('open', event);
    };

    proto._onError = function (event) {
      var inner = this._;
      var wasOpen = this.readyState === OPEN;
      var firstFailure = !inner.everOpened && this.state === 'connecting';
      this._closeSource();
      this.readyState = CONNECTING;
      if (wasOpen || firstFailure) {
        call(this.onerror, this, event);
        if (this.readyState === CLOSED) return; // closed by onerror
        this._dispatch('error', event);
        if (this.readyState === CLOSED) return;
      }
      this._setState('reconnecting');
      if (this.readyState === CLOSED) return; // closed by onstatechange
      var ceiling = Math.min(inner.maxRetryTime, BASE_DELAY * Math.pow(2, inner.attempt));
      this._log('the connection dropped; reconnecting in about ' + Math.round(ceiling) + ' ms from ' + (inner.lastEventId || 'the start'));
      var delay = (0.5 + Math.random() * 0.5) * ceiling;
      inner.attempt++;
      var self = this;
      inner.timer = setTimeout(function () {
        if (self.readyState === CLOSED || self._.source !== null) return;
        self._connect();
      }, delay);
    };

    // Every event of the stream: keep its id, then hand it on.
    proto._onEvent = function (type, event) {
      var previous = this._.lastEventId;
      // Presence carries no id of its own: it never moves the cursor.
      if (type !== 'stream-presence') this._trackId(event);
      if (type === 'stream-error' && this._renew(event)) return;
      if (this._.shared) this._.shared.forward(type, event, previous);
      if (type === 'stream-open') this._.renewing = false;
      if (type === 'stream-error') {
        this._log(
          'giving up: the server ended the stream (' + event.data + '); ' +
            "the server's operator can see why in its delivery trace " +
            '(Events::explain, or explain_path, for this channel and id)'
        );
        this._stop();
        this._setState('error');
        call(this.onstreamerror, this, event);
        this._dispatch(type, event);
        return;
      }
      if (type === 'stream-reset') {
        this._log('reset: ' + event.data + '; going on from ' + this._.lastEventId);
        this._setState('reset');
        call(this.onreset, this, event);
        this._dispatch(type, event);
        if (this.readyState === OPEN) this._setState('live');
        return;
      }
      if (type === 'stream-presence') call(this.onpresence, this, event);
      else if (type === 'message') call(this.onmessage, this, event);
      else if (type === 'open') call(this.onopen, this, event);
      else if (type === 'error') call(this.onerror, this, event);
      // As with EventTarget, the listeners still see this event when the
      // handler has just called close().
      this._dispatch(type, event);
    };

    // A stream-error saying the credential expired: asks the page for a
    // fresh one (once until the next stream-open) and reconnects from the
    // last id. Returns whether it took the error over.
    proto._renew = function (event) {
      var inner = this._;
      if (!inner.renew || inner.renewing || conditionOf(event) !== 'credentials-expired') return false;
      if (inner.shared && this.role === 'follower') return false;
      inner.renewing = true;
      this._log('the credential expired; asking the page for a fresh one');
      this._closeSource();
      this.readyState = CONNECTING;
      this._setState('reconnecting');
      var self = this;
      var renewed;
      try {
        renewed = Promise.resolve(inner.renew());
      } catch (error) {
        renewed = Promise.reject(error);
      }
      renewed.then(
        function () {
          if (self.readyState === CLOSED || self._.source !== null) return;
          self._log('renewed the credential; reconnecting from ' + (self._.lastEventId || 'the start'));
          self._connect();
        },
        function (error) {
          if (self.readyState === CLOSED) return;
          self._log('giving up: the credential could not be renewed (' + error + ')');
          self._stop();
          self._setState('error');
          call(self.onstreamerror, self, event);
          self._dispatch('stream-error', event);
        }
      );
      return true;
    };

    function conditionOf(event) {
      try {
        return JSON.parse(event.data).condition;
      } catch (error) {
        return null;
      }
    }

    // The url without its `token` parameter, for log lines.
    function withoutToken(url) {
      try {
        var parsed = new URL(url, global.location && global.location.href);
        if (parsed.searchParams.has('token')) parsed.searchParams.set('token', '…');
        return parsed.href;
      } catch (error) {
        return String(url).replace(/([?&]token=)[^&]*/, '$1…');
      }
    }

    // ---- shared mode -------------------------------------------------------

    function canShare() {
      var nav = global.navigator;
      return (
        !!nav &&
        !!nav.locks &&
        typeof nav.locks.request === 'function' &&
        typeof global.BroadcastChannel === 'function' &&
        typeof global.AbortController === 'function'
      );
    }

    // The name tabs share: the key and the absolute url without the
    // parameters that differ between tabs of one stream.
    function sharedName(url, key) {
      var base = global.location && global.location.href;
      var normalized = url;
      try {
        var parsed = new URL(url, base);
        parsed.searchParams.delete('lastEventId');
        parsed.searchParams.delete('token');
        parsed.hash = '';
        normalized = parsed.href;
      } catch (error) {
        // not a URL the browser parses: share by the string itself
      }
      return 'eventstream-rocket ' + JSON.stringify([key, normalized]);
    }

    // An id as eventstream-rocket writes it, `channel:seq` or a vector
    // `a:1,b:2`, as {channel: seq}; null when it is not one.
    function parseIds(id) {
      if (typeof id !== 'string' || id === '') return null;
      var ids = {};
      var parts = id.split(',');
      for (var i = 0; i < parts.length; i++) {
        var at = parts[i].lastIndexOf(':');
        if (at <= 0) return null;
        var seq = parts[i].slice(at + 1);
        if (!/^[0-9]+$/.test(seq)) return null;
        ids[parts[i].slice(0, at)] = Number(seq);
      }
      return ids;
    }

    // Whether an event that moved the stream from `previous` to `id` is new
    // to a tab whose cursor is `cursor`: one of the channels it advanced is
    // past the cursor. Ids that cannot be compared count as new.
    function isNewTo(cursor, previous, id) {
      if (!cursor || !id || id === previous) return true;
      var at = parseIds(cursor);
      var after = parseIds(id);
      if (!at || !after) return id !== cursor;
      var before = parseIds(previous) || {};
      var advanced = false;
      for (var channel in after) {
        if (!Object.prototype.hasOwnProperty.call(after, channel)) continue;
        if (before[channel] === after[channel]) continue;
        advanced = true;
        if (!(channel in at) || after[channel] > at[channel]) return true;
      }
      return !advanced;
    }

    // Whether `id` is behind `cursor` on some channel (a leader that
    // connected from an older position than this tab's).
    function isBehind(cursor, id) {
      var at = parseIds(cursor);
      var ids = parseIds(id);
      if (!at || !ids) return false;
      for (var channel in ids) {
        if (Object.prototype.hasOwnProperty.call(ids, channel) && channel in at && ids[channel] < at[channel]) {
          return true;
        }
      }
      return false;
    }

    // Whether the backlog covers a tab at `cursor`
    // while the leader is at `current`: every channel on which the tab is
    // behind has its next event in the backlog.
    function backlogCovers(backlog, cursor, current) {
      if (!cursor || cursor === current) return true;
      var at = parseIds(cursor);
      var now = parseIds(current);
      if (!at || !now) {
        for (var k = 0; k < backlog.length; k++) if (backlog[k].previous === cursor) return true;
        return false;
      }
      for (var channel in now) {
        if (!Object.prototype.hasOwnProperty.call(now, channel)) continue;
        var mine = channel in at ? at[channel] : 0;
        if (mine >= now[channel]) continue;
        var found = false;
        for (var i = 0; i < backlog.length && !found; i++) {
          var before = parseIds(backlog[i].previous) || {};
          var after = parseIds(backlog[i].id) || {};
          var from = channel in before ? before[channel] : 0;
          found = from <= mine && after[channel] > mine;
        }
        if (!found) return false;
      }
      return true;
    }

    function tabId() {
      return Math.random().toString(36).slice(2) + Date.now().toString(36);
    }

    // One source's part in a group of tabs: waits for the group's lock (then
    // leads), and meanwhile follows what the leader forwards.
    function SharedTab(source, name) {
      var self = this;
      this.source = source;
      this.id = tabId();
      this.channel = new global.BroadcastChannel(name);
      this.abort = new global.AbortController();
      this.release = null; // ends the lock's hold, when leading
      this.backlog = []; // the last stored events seen (see remember)
      this.welcomed = false; // follower: the leader answered our hello
      this.welcomeTimer = null;
      this.stopped = false;
      this.others = {}; // tab id -> the event types it listens to
      source.role = 'follower';
      this.channel.onmessage = function (message) {
        if (!self.stopped) self.receive(message.data || {});
      };
      global.navigator.locks
        .request(name, { signal: this.abort.signal }, function () {
          if (self.stopped) return undefined;
          return new Promise(function (resolve) {
            self.release = resolve;
            self.lead();
          });
        })
        .catch(function () {
          // aborted by stop(): nothing to do
        });
      this.hello();
    }

    SharedTab.prototype.post = function (message) {
      try {
        this.channel.postMessage(message);
      } catch (error) {
        reportError(error);
      }
    };

    // The event types this tab's page listens to.
    SharedTab.prototype.ownTypes = function () {
      return Object.keys(this.source._.listeners);
    };

    // Every type some other tab of the group listens to.
    SharedTab.prototype.groupTypes = function () {
      var types = [];
      for (var tab in this.others) {
        if (!Object.prototype.hasOwnProperty.call(this.others, tab)) continue;
        for (var i = 0; i < this.others[tab].length; i++) {
          if (types.indexOf(this.others[tab][i]) === -1) types.push(this.others[tab][i]);
        }
      }
      return types;
    };

    // Tells the group which types this tab listens to (a new listener).
    SharedTab.prototype.announceTypes = function () {
      this.post({ kind: 'types', from: this.id, types: this.ownTypes() });
    };

    // Another tab's types: whichever tab leads listens to them too.
    SharedTab.prototype.learnTypes = function (from, types) {
      if (!from || from === this.id || !Array.isArray(types)) return;
      this.others[from] = types.map(String);
      if (this.source.role === 'leader') {
        for (var i = 0; i < types.length; i++) this.source._forward(String(types[i]));
      }
    };

    SharedTab.prototype.hello = function () {
      var self = this;
      this.post({ kind: 'hello', from: this.id, cursor: this.source._.lastEventId, types: this.ownTypes() });
      if (this.welcomeTimer !== null) clearTimeout(this.welcomeTimer);
      this.welcomeTimer = setTimeout(function () {
        self.welcomeTimer = null;
        if (!self.welcomed && !self.stopped && self.source.role === 'follower') self.goAlone();
      }, SHARED_WELCOME_TIMEOUT);
    };

    // This tab got the lock: it connects, from its own cursor.
    SharedTab.prototype.lead = function () {
      if (this.welcomeTimer !== null) {
        clearTimeout(this.welcomeTimer);
        this.welcomeTimer = null;
      }
      this.welcomed = true;
      this.source.role = 'leader';
      this.post({ kind: 'leader', from: this.id, types: this.ownTypes() });
      if (this.source.readyState === OPEN) this.source.readyState = CONNECTING;
      this.source._connect();
    };

    // The leader does not answer, or cannot serve our cursor: connect alone.
    SharedTab.prototype.goAlone = function () {
      var source = this.source;
      this.stop();
      source._.shared = null;
      source.role = 'alone';
      if (source.readyState !== CLOSED) source._connect();
    };

    SharedTab.prototype.stop = function () {
      if (this.stopped) return;
      this.post({ kind: 'bye', from: this.id });
      this.stopped = true;
      if (this.welcomeTimer !== null) clearTimeout(this.welcomeTimer);
      this.welcomeTimer = null;
      this.abort.abort();
      if (this.release) this.release();
      this.release = null;
      this.channel.onmessage = null;
      try {
        this.channel.close();
      } catch (error) {
        reportError(error);
      }
    };

    // Leader: hands every event of its stream to the other tabs.
    SharedTab.prototype.forward = function (type, event, previous) {
      if (this.source.role !== 'leader' || this.stopped) return;
      var entry = { type: type, data: event.data, id: this.source._.lastEventId, previous: previous };
      this.remember(entry);
      this.post({ kind: 'event', from: this.id, event: entry });
    };

    // Every tab keeps the newest entries it saw, in stream order, so that
    // whichever leads can welcome a joining tab. Entries that moved no
    // cursor are not kept: no joining tab gets them.
    SharedTab.prototype.remember = function (entry) {
      if (entry.id === entry.previous) return;
      this.backlog.push(entry);
      if (this.backlog.length > SHARED_BACKLOG) this.backlog.shift();
    };

    // Follower: asks the leader again, from this tab's cursor (after a
    // gap). Until it answers, forwarded events are left to its answer.
    SharedTab.prototype.rejoin = function () {
      this.welcomed = false;
      this.backlog = [];
      this.hello();
    };

    // Leader: tells the followers its state.
    SharedTab.prototype.leaderState = function (state) {
      if (this.source.role !== 'leader' || this.stopped) return;
      this.post({ kind: 'state', from: this.id, state: state });
    };

    SharedTab.prototype.receive = function (message) {
      var source = this.source;
      // Every tab keeps every other tab's types, whatever its role: the
      // next leader needs them.
      if (message.types) this.learnTypes(message.from, message.types);
      if (message.kind === 'bye') delete this.others[message.from];
      if (source.role === 'leader') {
        if (message.kind === 'hello') this.welcome(message);
        return;
      }
      if (source.role !== 'follower') return;
      if (message.kind === 'leader' && !this.welcomed) {
        this.hello();
      } else if (message.kind === 'leader') {
        this.announceTypes();
      } else if (message.kind === 'welcome' && message.to === this.id && !this.welcomed) {
        if (this.welcomeTimer !== null) clearTimeout(this.welcomeTimer);
        this.welcomeTimer = null;
        if (!message.covered) {
          this.goAlone();
          return;
        }
        this.welcomed = true;
        this.followState(message.state);
        for (var i = 0; i < message.events.length && source._.shared === this && this.welcomed; i++) {
          this.remember(message.events[i]);
          this.deliver(message.events[i]);
        }
      } else if (message.kind === 'event' && this.welcomed) {
        this.remember(message.event);
        this.deliver(message.event);
      } else if (message.kind === 'state' && this.welcomed) {
        this.followState(message.state);
      }
    };

    // Leader: answers a joining tab with what it missed, when it can: the
    // stored events past its cursor. Entries that moved no cursor (live-only
    // events, keep-alives, resets of live-only channels) are past news that
    // a connection of its own would not have replayed either.
    SharedTab.prototype.welcome = function (hello) {
      var current = this.source._.lastEventId;
      var covered = backlogCovers(this.backlog, hello.cursor, current);
      var events = [];
      if (covered && hello.cursor) {
        for (var i = 0; i < this.backlog.length; i++) {
          var entry = this.backlog[i];
          if (isNewTo(hello.cursor, entry.previous, entry.id)) events.push(entry);
        }
      }
      this.post({
        kind: 'welcome',
        from: this.id,
        to: hello.from,
        covered: covered,
        events: events,
        state: this.source.state,
      });
    };

    // Follower: dispatches a forwarded event unless this tab has it already.
    // The protocol's own events always reach it; stream-open and keep-alive
    // from a leader behind this tab do not move its cursor back. An event
    // that moves the stream on from past this tab's cursor follows one it
    // has not seen (a leader's last forward that never arrived, or two
    // leaders' forwards crossing): it asks again instead of skipping ahead.
    SharedTab.prototype.deliver = function (entry) {
      var source = this.source;
      var cursor = source._.lastEventId;
      if (entry.id !== entry.previous && isBehind(entry.previous, cursor)) {
        this.rejoin();
        return;
      }
      var control = entry.type !== 'message' && TRACKED_TYPES.indexOf(entry.type) !== -1;
      if (!control && !isNewTo(cursor, entry.previous, entry.id)) return;
      var keepCursor = (entry.type === 'stream-open' || entry.type === 'keep-alive') && isBehind(cursor, entry.id);
      var event;
      try {
        event = new global.MessageEvent(entry.type, { data: entry.data, lastEventId: entry.id || '' });
      } catch (error) {
        event = { type: entry.type, data: entry.data, lastEventId: entry.id || '' };
      }
      if (keepCursor) source._dispatch(entry.type, event);
      else source._onEvent(entry.type, event);
    };

    // Follower: mirrors the leader's connection.
    SharedTab.prototype.followState = function (state) {
      var source = this.source;
      if (source.readyState === CLOSED) return;
      if (state === 'live' && source.readyState !== OPEN) {
        source._.everOpened = true;
        source.readyState = OPEN;
        source._setState('live');
        call(source.onopen, source, { type: 'open' });
        if (source.readyState === OPEN) source._dispatch('open', { type: 'open' });
      } else if (state === 'reconnecting' || state === 'connecting') {
        var wasOpen = source.readyState === OPEN;
        source.readyState = CONNECTING;
        if (wasOpen) {
          call(source.onerror, source, { type: 'error' });
          if (source.readyState === CLOSED) return;
          source._dispatch('error', { type: 'error' });
          if (source.readyState === CLOSED) return;
        }
        source._setState(state === 'connecting' ? 'connecting' : 'reconnecting');
      }
    };

    return {
      ReconnectingEventSource: ReconnectingEventSource,
      EventSourceNotAvailableError: EventSourceNotAvailableError,
    };
  }
);
