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
 *   });
 *   es.addEventListener('message', function (e) { ... e.lastEventId, e.data ... });
 *
 * Standard members: url, readyState (CONNECTING 0, OPEN 1, CLOSED 2, also as
 * constants on the class and the instance), withCredentials, lastEventId
 * (read-only: the newest id seen, or the lastEventId option before that),
 * onopen, onmessage, onerror, addEventListener(type, fn),
 * removeEventListener(type, fn), close().
 * Every configuration key other than max_retry_time, lastEventId and
 * eventSourceClass is passed to the EventSource constructor.
 *
 * Extras:
 *   onreset(event)        called for a `stream-reset` event (the listed
 *                         channels could not be resumed: reload their state).
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
    var TRACKED_TYPES = ['message', 'stream-open', 'stream-reset', 'stream-error', 'keep-alive'];
    // Our own options; everything else goes to the EventSource constructor.
    var OWN_OPTIONS = ['max_retry_time', 'lastEventId', 'eventSourceClass'];

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
      if (!id) return url;
      var hash = '';
      var at = url.indexOf('#');
      if (at !== -1) {
        hash = url.slice(at);
        url = url.slice(0, at);
      }
      var separator = url.indexOf('?') === -1 ? '?' : '&';
      return url + separator + 'lastEventId=' + encodeURIComponent(id) + hash;
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

      this.url = String(url);
      this.withCredentials = Boolean(config.withCredentials);
      this.readyState = CONNECTING;
      this.state = 'connecting';
      this.onopen = null;
      this.onmessage = null;
      this.onerror = null;
      this.onreset = null;
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
        },
      });

      this._connect();
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
      var list = listeners[type] || (listeners[type] = []);
      if (list.indexOf(listener) === -1) list.push(listener);
      this._forward(type);
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
      try {
        source = new inner.eventSourceClass(withLastEventId(this.url, inner.lastEventId), inner.innerConfig);
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
      for (var i = 0; i < types.length; i++) this._forward(types[i]);
    };

    proto._onOpen = function (event) {
      var inner = this._;
      inner.attempt = 0;
      inner.everOpened = true;
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
      this._trackId(event);
      if (type === 'stream-error') {
        this._stop();
        this._setState('error');
        call(this.onstreamerror, this, event);
        this._dispatch(type, event);
        return;
      }
      if (type === 'stream-reset') {
        this._setState('reset');
        call(this.onreset, this, event);
        this._dispatch(type, event);
        if (this.readyState === OPEN) this._setState('live');
        return;
      }
      if (type === 'message') call(this.onmessage, this, event);
      else if (type === 'open') call(this.onopen, this, event);
      else if (type === 'error') call(this.onerror, this, event);
      // As with EventTarget, the listeners still see this event when the
      // handler has just called close().
      this._dispatch(type, event);
    };

    return {
      ReconnectingEventSource: ReconnectingEventSource,
      EventSourceNotAvailableError: EventSourceNotAvailableError,
    };
  }
);
