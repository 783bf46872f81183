/*! eventstream-rocket EventSource polyfill (fetch + ReadableStream) | MIT OR Apache-2.0 | source: js/src/eventsource.js */
/*
 * EventSourcePolyfill: an implementation of the WHATWG `EventSource`
 * interface on top of `fetch`, `ReadableStream` and `TextDecoder`, written
 * for eventstream-rocket.
 *
 *   <script src="eventsource.min.js"></script>
 *   var es = new EventSourcePolyfill('/events/_private', {
 *     headers: { Authorization: 'Bearer ' + token },  // native EventSource cannot
 *     withCredentials: false,
 *     heartbeatTimeout: 45000,
 *   });
 *
 * Loading the script always defines `window.EventSourcePolyfill`, and defines
 * `window.EventSource` only where the browser has none. With CommonJS the same
 * object is also `module.exports`.
 *
 * Options:
 *   withCredentials   fetch with `credentials: 'include'` (else 'same-origin').
 *   headers           extra request headers (object or Headers), e.g.
 *                     Authorization. Cross-origin, the server's CORS
 *                     configuration must allow them.
 *   heartbeatTimeout  ms without any received byte (and without a response)
 *                     after which the connection is aborted and re-established
 *                     (default 45000; keep it above the server's keep-alive).
 *
 * Behaviour follows the HTML standard's processing model:
 *   - the body is decoded as UTF-8 (a leading BOM is dropped by TextDecoder);
 *   - lines end with CRLF, LF or CR (also when CR and LF arrive in two chunks);
 *   - lines starting with ':' are comments; fields event, data, id, retry;
 *     `id` values containing NUL are ignored; `retry` needs ASCII digits only;
 *   - a blank line dispatches the event (nothing when the data is empty);
 *   - a 200 response with Content-Type text/event-stream opens the stream;
 *     any other response fails it for good (`error`, readyState CLOSED);
 *   - a network error, the end of the body or the heartbeat timeout fire
 *     `error` with readyState CONNECTING, and after the reconnection time
 *     (3000 ms, or the last `retry:`) the request is repeated with a
 *     `Last-Event-ID` header when an id is known.
 * Requests carry `Accept: text/event-stream` and are made with fetch's
 * `cache: 'no-store'`, which makes the browser itself send
 * `Cache-Control: no-cache` (and `Pragma: no-cache`). Setting that header by
 * hand would turn every cross-origin request into a CORS preflight that the
 * server's default allowed headers (Last-Event-ID, Authorization) would
 * refuse.
 * As in Chromium and Firefox, the last event id carries over to the next
 * connection of the same object, so an event without an `id:` line after a
 * reconnect keeps the previous id.
 */
(function (root, factory) {
  'use strict';
  var api = factory(root);
  if (typeof module === 'object' && module && module.exports) {
    module.exports = api;
  }
  if (root) {
    root.EventSourcePolyfill = api.EventSourcePolyfill;
    if (typeof root.EventSource !== 'function') {
      root.EventSource = api.EventSourcePolyfill;
    }
  }
})(
  typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this,
  function (global) {
    'use strict';

    var CONNECTING = 0;
    var OPEN = 1;
    var CLOSED = 2;
    var DEFAULT_RECONNECTION_TIME = 3000;
    var DEFAULT_HEARTBEAT_TIMEOUT = 45000;

    // ---- event target ---------------------------------------------------

    // A small stand-in for environments without a constructible EventTarget.
    function SimpleEventTarget() {
      Object.defineProperty(this, '_listenersByType', { value: {} });
    }
    SimpleEventTarget.prototype.addEventListener = function (type, listener) {
      if (!listener) return;
      var list = this._listenersByType[type] || (this._listenersByType[type] = []);
      if (list.indexOf(listener) === -1) list.push(listener);
    };
    SimpleEventTarget.prototype.removeEventListener = function (type, listener) {
      var list = this._listenersByType[type];
      if (!list) return;
      var at = list.indexOf(listener);
      if (at !== -1) list.splice(at, 1);
    };
    SimpleEventTarget.prototype.dispatchEvent = function (event) {
      var list = (this._listenersByType[event.type] || []).slice();
      try {
        Object.defineProperty(event, 'target', { value: this, configurable: true });
        Object.defineProperty(event, 'currentTarget', { value: this, configurable: true });
      } catch (ignored) {
        // a host event whose target cannot be redefined
      }
      for (var i = 0; i < list.length; i++) {
        var listener = list[i];
        try {
          if (typeof listener === 'function') listener.call(this, event);
          else if (listener && typeof listener.handleEvent === 'function') listener.handleEvent(event);
        } catch (error) {
          reportError(error);
        }
      }
      return !event.defaultPrevented;
    };

    function hasConstructibleEventTarget() {
      if (typeof global.EventTarget !== 'function') return false;
      try {
        new global.EventTarget();
        return true;
      } catch (ignored) {
        return false;
      }
    }

    var BaseTarget = hasConstructibleEventTarget() ? global.EventTarget : SimpleEventTarget;

    function reportError(error) {
      if (typeof global.reportError === 'function') {
        global.reportError(error);
      } else {
        setTimeout(function () {
          throw error;
        }, 0);
      }
    }

    function makeEvent(type) {
      if (typeof global.Event === 'function') {
        try {
          return new global.Event(type);
        } catch (ignored) {
          // fall through
        }
      }
      return { type: type, defaultPrevented: false };
    }

    function makeMessageEvent(type, init) {
      if (typeof global.MessageEvent === 'function') {
        try {
          return new global.MessageEvent(type, init);
        } catch (ignored) {
          // fall through
        }
      }
      var event = makeEvent(type);
      for (var key in init) {
        Object.defineProperty(event, key, { value: init[key], enumerable: true });
      }
      return event;
    }

    function syntaxError(message) {
      if (typeof global.DOMException === 'function') {
        return new global.DOMException(message, 'SyntaxError');
      }
      return new SyntaxError(message);
    }

    // ---- the line parser --------------------------------------------------

    // Splits decoded text into lines (CRLF, LF or CR) and interprets fields.
    // `sink` receives onField-style callbacks through its methods.
    function StreamParser(lastEventId, sink) {
      this.sink = sink;
      this.pending = ''; // an incomplete line
      this.afterCR = false; // the previous text ended with CR
      this.data = '';
      this.eventType = '';
      this.idBuffer = lastEventId;
    }

    StreamParser.prototype.push = function (text) {
      if (text === '') return;
      var position = 0;
      if (this.afterCR) {
        this.afterCR = false;
        if (text.charCodeAt(0) === 10) position = 1; // the LF of a split CRLF
      }
      var length = text.length;
      while (position < length) {
        var end = position;
        var code = 0;
        while (end < length) {
          code = text.charCodeAt(end);
          if (code === 10 || code === 13) break;
          end++;
        }
        if (end === length) {
          this.pending += text.slice(position);
          return;
        }
        var line = this.pending + text.slice(position, end);
        this.pending = '';
        position = end + 1;
        if (code === 13) {
          if (position < length) {
            if (text.charCodeAt(position) === 10) position++;
          } else {
            this.afterCR = true;
          }
        }
        this.line(line);
        if (this.sink.stopped()) return;
      }
    };

    StreamParser.prototype.line = function (line) {
      if (line === '') {
        this.dispatch();
        return;
      }
      if (line.charCodeAt(0) === 58) return; // ':' comment
      var colon = line.indexOf(':');
      var field;
      var value;
      if (colon === -1) {
        field = line;
        value = '';
      } else {
        field = line.slice(0, colon);
        value = line.slice(colon + 1);
        if (value.charCodeAt(0) === 32) value = value.slice(1);
      }
      switch (field) {
        case 'event':
          this.eventType = value;
          break;
        case 'data':
          this.data += value + '\n';
          break;
        case 'id':
          if (value.indexOf('\u0000') === -1) this.idBuffer = value;
          break;
        case 'retry':
          if (/^[0-9]+$/.test(value)) this.sink.retry(parseInt(value, 10));
          break;
        default:
        // unknown fields are ignored
      }
    };

    StreamParser.prototype.dispatch = function () {
      this.sink.lastEventId(this.idBuffer);
      if (this.data === '') {
        this.eventType = '';
        return;
      }
      var data = this.data.slice(0, -1);
      var type = this.eventType === '' ? 'message' : this.eventType;
      this.data = '';
      this.eventType = '';
      this.sink.event(type, data, this.idBuffer);
    };

    // ---- EventSourcePolyfill -------------------------------------------

    function isEventStream(contentType) {
      if (!contentType) return false;
      var essence = contentType.split(';')[0].replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, '');
      return essence.toLowerCase() === 'text/event-stream';
    }

    function copyHeaders(source) {
      var copy = [];
      if (!source) return copy;
      if (typeof source.forEach === 'function' && !Array.isArray(source)) {
        source.forEach(function (value, name) {
          copy.push([name, value]);
        });
      } else if (Array.isArray(source)) {
        for (var i = 0; i < source.length; i++) copy.push([source[i][0], source[i][1]]);
      } else {
        for (var key in source) {
          if (Object.prototype.hasOwnProperty.call(source, key)) copy.push([key, String(source[key])]);
        }
      }
      return copy;
    }

    function baseUrl() {
      try {
        if (global.document && global.document.baseURI) return global.document.baseURI;
        if (global.location && global.location.href) return global.location.href;
      } catch (ignored) {
        // no document
      }
      return undefined;
    }

    class EventSourcePolyfill extends BaseTarget {
      constructor(url, eventSourceInitDict) {
        super();
        var init = eventSourceInitDict || {};
        var resolved;
        try {
          resolved = new URL(String(url), baseUrl()).href;
        } catch (ignored) {
          throw syntaxError("Failed to construct 'EventSource': The URL '" + url + "' is invalid.");
        }
        var heartbeat = Number(init.heartbeatTimeout);
        Object.defineProperty(this, '_s', {
          value: {
            url: resolved,
            withCredentials: Boolean(init.withCredentials),
            headers: copyHeaders(init.headers),
            heartbeatTimeout: heartbeat > 0 ? heartbeat : DEFAULT_HEARTBEAT_TIMEOUT,
            readyState: CONNECTING,
            lastEventId: '',
            reconnectionTime: DEFAULT_RECONNECTION_TIME,
            connection: null, // {controller, heartbeat} of the current request
            reconnectTimer: null,
            handlers: {},
          },
        });
        this._connect();
      }

      get url() {
        return this._s.url;
      }

      get withCredentials() {
        return this._s.withCredentials;
      }

      get readyState() {
        return this._s.readyState;
      }

      close() {
        var state = this._s;
        state.readyState = CLOSED;
        if (state.reconnectTimer !== null) {
          clearTimeout(state.reconnectTimer);
          state.reconnectTimer = null;
        }
        this._dropConnection();
      }

      // Starts one request. Every callback checks that its connection is
      // still the current one, so late results of an aborted request are
      // ignored.
      _connect() {
        var self = this;
        var state = this._s;
        state.reconnectTimer = null;
        var controller = typeof global.AbortController === 'function' ? new global.AbortController() : null;
        var connection = { controller: controller, heartbeat: null, reader: null };
        state.connection = connection;

        var headers = new global.Headers();
        for (var i = 0; i < state.headers.length; i++) headers.set(state.headers[i][0], state.headers[i][1]);
        headers.set('Accept', 'text/event-stream');
        if (state.lastEventId !== '') headers.set('Last-Event-ID', state.lastEventId);

        this._armHeartbeat(connection);
        var request;
        try {
          request = global.fetch(state.url, {
            method: 'GET',
            headers: headers,
            mode: 'cors',
            credentials: state.withCredentials ? 'include' : 'same-origin',
            cache: 'no-store',
            redirect: 'follow',
            signal: controller ? controller.signal : undefined,
          });
        } catch (error) {
          request = Promise.reject(error);
        }
        request.then(
          function (response) {
            if (state.connection !== connection) {
              cancelBody(response);
              return;
            }
            self._onResponse(connection, response);
          },
          function () {
            if (state.connection === connection) self._reestablish();
          }
        );
      }

      _onResponse(connection, response) {
        var state = this._s;
        if (response.status !== 200 || !isEventStream(response.headers.get('Content-Type')) || !response.body) {
          cancelBody(response);
          this._fail();
          return;
        }
        var self = this;
        var origin;
        try {
          origin = new URL(response.url || state.url).origin;
        } catch (ignored) {
          origin = new URL(state.url).origin;
        }
        var reader = response.body.getReader();
        connection.reader = reader;
        var decoder = new global.TextDecoder('utf-8');
        var parser = new StreamParser(state.lastEventId, {
          stopped: function () {
            return state.connection !== connection;
          },
          retry: function (ms) {
            state.reconnectionTime = ms;
          },
          lastEventId: function (id) {
            state.lastEventId = id;
          },
          event: function (type, data, lastEventId) {
            if (state.readyState === CLOSED) return;
            self.dispatchEvent(
              makeMessageEvent(type, { data: data, origin: origin, lastEventId: lastEventId })
            );
          },
        });

        state.readyState = OPEN;
        this._armHeartbeat(connection);
        this.dispatchEvent(makeEvent('open'));

        function pump() {
          if (state.connection !== connection) return;
          reader.read().then(
            function (result) {
              if (state.connection !== connection) return;
              if (result.done) {
                parser.push(decoder.decode());
                self._reestablish();
                return;
              }
              self._armHeartbeat(connection);
              parser.push(decoder.decode(result.value, { stream: true }));
              pump();
            },
            function () {
              if (state.connection === connection) self._reestablish();
            }
          );
        }
        pump();
      }

      _armHeartbeat(connection) {
        var self = this;
        if (connection.heartbeat !== null) clearTimeout(connection.heartbeat);
        connection.heartbeat = setTimeout(function () {
          connection.heartbeat = null;
          if (self._s.connection === connection) self._reestablish();
        }, this._s.heartbeatTimeout);
      }

      // Aborts the current request, if any, and forgets it.
      _dropConnection() {
        var connection = this._s.connection;
        if (!connection) return;
        this._s.connection = null;
        if (connection.heartbeat !== null) clearTimeout(connection.heartbeat);
        if (connection.reader) {
          try {
            connection.reader.cancel().catch(function () {});
          } catch (ignored) {
            // already released
          }
        }
        if (connection.controller) connection.controller.abort();
      }

      // "Reestablish the connection": error event, CONNECTING, then retry.
      _reestablish() {
        var state = this._s;
        this._dropConnection();
        if (state.readyState === CLOSED) return;
        state.readyState = CONNECTING;
        this.dispatchEvent(makeEvent('error'));
        if (state.readyState !== CONNECTING || state.reconnectTimer !== null || state.connection !== null) return;
        var self = this;
        state.reconnectTimer = setTimeout(function () {
          state.reconnectTimer = null;
          if (state.readyState === CONNECTING && state.connection === null) self._connect();
        }, state.reconnectionTime);
      }

      // "Fail the connection": CLOSED for good, then an error event.
      _fail() {
        var state = this._s;
        this._dropConnection();
        if (state.readyState === CLOSED) return;
        state.readyState = CLOSED;
        this.dispatchEvent(makeEvent('error'));
      }
    }

    function cancelBody(response) {
      try {
        if (response.body && typeof response.body.cancel === 'function') {
          response.body.cancel().catch(function () {});
        }
      } catch (ignored) {
        // locked or already consumed
      }
    }

    // The onopen / onmessage / onerror event handler attributes. Like the
    // real ones, a handler keeps the position among listeners where it was
    // first set.
    ['open', 'message', 'error'].forEach(function (type) {
      Object.defineProperty(EventSourcePolyfill.prototype, 'on' + type, {
        configurable: true,
        enumerable: true,
        get: function () {
          var handler = this._s.handlers[type];
          return handler ? handler.fn : null;
        },
        set: function (fn) {
          var handlers = this._s.handlers;
          var value = typeof fn === 'function' ? fn : null;
          if (handlers[type]) {
            handlers[type].fn = value;
            return;
          }
          if (value === null) return;
          var self = this;
          var entry = { fn: value };
          entry.listener = function (event) {
            if (typeof entry.fn === 'function') return entry.fn.call(self, event);
          };
          handlers[type] = entry;
          this.addEventListener(type, entry.listener);
        },
      });
    });

    [
      ['CONNECTING', CONNECTING],
      ['OPEN', OPEN],
      ['CLOSED', CLOSED],
    ].forEach(function (pair) {
      var descriptor = { value: pair[1], enumerable: true };
      Object.defineProperty(EventSourcePolyfill, pair[0], descriptor);
      Object.defineProperty(EventSourcePolyfill.prototype, pair[0], descriptor);
    });

    return { EventSourcePolyfill: EventSourcePolyfill, StreamParser: StreamParser };
  }
);
