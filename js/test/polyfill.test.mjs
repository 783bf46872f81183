// The EventSource polyfill (static/eventsource.min.js) in Chromium:
// against the example server, and against hand-made streams from Node.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  cleanupAfter,
  launchBrowser,
  listen,
  makeJwt,
  openPage,
  publish,
  removeDir,
  screenshotPath,
  sleep,
  startServer,
  startStaticServer,
  waitUntil,
} from './helpers.mjs';

let browser;
let statics;

before(async () => {
  browser = await launchBrowser();
  statics = await startStaticServer();
});

after(async () => {
  if (browser) await browser.close();
  if (statics) await statics.close();
});

async function waitRec(page, name, predicate, timeout = 15000) {
  try {
    await page.waitForFunction(
      ([n, source]) => {
        const entry = window.records[n];
        // eslint-disable-next-line no-new-func
        return entry && new Function('rec', 'es', `return (${source})(rec, es);`)(entry.rec, entry.es);
      },
      [name, predicate.toString()],
      { timeout, polling: 20 }
    );
  } catch (error) {
    const state = await page
      .evaluate((n) => JSON.stringify(window.records[n] && window.records[n].rec), name)
      .catch(() => '?');
    error.message += `\n  waiting for ${predicate}\n  records.${name}: ${state}`;
    throw error;
  }
}

const rec = (page, name) => page.evaluate((n) => window.records[n].rec, name);

/**
 * A Node server for hand-made streams, cross-origin to the page: CORS for
 * any origin, preflights answered, every request recorded.
 * `handler(req, res, index)` answers the index-th GET (0-based).
 */
async function startSseServer(handler) {
  const requests = [];
  const server = http.createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET',
        'Access-Control-Allow-Headers': 'Last-Event-ID, Authorization',
      });
      res.end();
      return;
    }
    const entry = { url: req.url, headers: req.headers, at: Date.now(), closedAt: null };
    req.socket.on('close', () => {
      entry.closedAt = Date.now();
    });
    res.on('close', () => {
      if (entry.closedAt === null) entry.closedAt = Date.now();
    });
    requests.push(entry);
    handler(req, res, requests.length - 1, entry);
  });
  return { requests, ...(await listen(server)) };
}

describe('EventSource polyfill', () => {
  test('(e) with window.EventSource deleted: becomes EventSource, sends Authorization, carries ReconnectingEventSource', async (t) => {
    const defer = cleanupAfter(t);
    const server = await startServer();
    defer(() => removeDir(server.dir));
    defer(() => server.stop());
    const { page, context, requests, pageErrors } = await openPage(browser, statics.origin, {
      polyfill: true,
      deleteNative: true,
    });
    defer(() => context.close());

    const installed = await page.evaluate(() => ({
      isPolyfill: window.EventSource === window.EventSourcePolyfill,
      type: typeof window.EventSourcePolyfill,
      constants: [EventSource.CONNECTING, EventSource.OPEN, EventSource.CLOSED],
    }));
    assert.deepEqual(installed, { isPolyfill: true, type: 'function', constants: [0, 1, 2] });

    const token = makeJwt('alice');
    const privateUrl = `${server.origin}/events/_secret`;
    // The bare polyfill, with a header a native EventSource cannot send.
    await page.evaluate(
      ([u, tok]) =>
        openES('raw', 'EventSource', u, { headers: { Authorization: 'Bearer ' + tok } }, ['stream-error']),
      [privateUrl, token]
    );
    // Anonymous: refused with a stream-error (the server's own check).
    await page.evaluate((u) => openES('anon', 'EventSource', u, {}, ['stream-error']), privateUrl);
    // ReconnectingEventSource on top of the polyfill, with the same header.
    await page.evaluate(
      ([u, tok]) => openRES('res', u, { headers: { Authorization: 'Bearer ' + tok }, max_retry_time: 1000 }),
      [privateUrl, token]
    );
    await waitRec(page, 'raw', (rec) => rec.streamOpens === 1);
    await waitRec(page, 'res', (rec) => rec.streamOpens === 1);
    await waitRec(page, 'anon', (rec) => rec.events.length === 1);

    const anon = await rec(page, 'anon');
    assert.equal(anon.events[0].type, 'stream-error');
    assert.equal(JSON.parse(anon.events[0].data).condition, 'forbidden');

    for (let n = 1; n <= 2; n++) await publish(server.origin, '_secret', { n });
    await waitRec(page, 'raw', (rec) => rec.events.length >= 2);
    await waitRec(page, 'res', (rec) => rec.events.length >= 2);
    let raw = await rec(page, 'raw');
    assert.deepEqual(
      raw.events.map((e) => [e.type, e.lastEventId, JSON.parse(e.data).n, e.origin]),
      [
        ['message', '_secret:1', 1, server.origin],
        ['message', '_secret:2', 2, server.origin],
      ]
    );
    assert.equal(raw.opens, 1);
    const inner = await page.evaluate(() => window.records.res.es._.source instanceof EventSourcePolyfill);
    assert.ok(inner, 'ReconnectingEventSource uses the polyfill');

    // Both resume after a restart of the server: the polyfill by itself with
    // Last-Event-ID after its 3 s retry, ReconnectingEventSource with its
    // lastEventId parameter.
    await server.stop('SIGKILL');
    await waitRec(page, 'res', (rec) => rec.states.includes('reconnecting'));
    await waitRec(page, 'raw', (rec) => rec.errors.length >= 1);
    const second = await startServer({ port: server.port, dir: server.dir });
    defer(() => second.stop());
    for (let n = 3; n <= 4; n++) await publish(second.origin, '_secret', { n });
    await waitRec(page, 'res', (rec) => rec.streamOpens === 2);
    await waitRec(page, 'raw', (rec) => rec.streamOpens === 2);
    // A marker after both resumed: anything repeated would come before it.
    await publish(second.origin, '_secret', { n: 5 });
    await waitRec(page, 'res', (rec) => rec.events.some((e) => e.lastEventId === '_secret:5'));
    await waitRec(page, 'raw', (rec) => rec.events.some((e) => e.lastEventId === '_secret:5'));

    raw = await rec(page, 'raw');
    assert.deepEqual(
      raw.events.map((e) => e.lastEventId),
      ['_secret:1', '_secret:2', '_secret:3', '_secret:4', '_secret:5']
    );
    // One error per failed attempt (one, unless the restart took over 3 s),
    // each while CONNECTING.
    assert.ok(raw.errors.length >= 1 && raw.errors.every((s) => s === 0), JSON.stringify(raw.errors));
    assert.equal(raw.opens, 2);
    const res = await rec(page, 'res');
    assert.deepEqual(
      res.events.map((e) => [e.lastEventId, JSON.parse(e.data).n]),
      [1, 2, 3, 4, 5].map((n) => [`_secret:${n}`, n])
    );
    assert.deepEqual(res.states, ['connecting', 'live', 'reconnecting', 'live']);

    const toPrivate = requests.filter((q) => q.url.startsWith(privateUrl));
    const withAuth = toPrivate.filter((q) => q.headers.authorization === `Bearer ${token}`);
    const resumedByHeader = toPrivate.filter((q) => q.headers['last-event-id'] === '_secret:2');
    const resumedByQuery = toPrivate.filter((q) => q.url === `${privateUrl}?lastEventId=_secret%3A2`);
    assert.ok(withAuth.length >= 4, `Authorization sent on every authenticated request (${withAuth.length})`);
    assert.ok(resumedByHeader.length >= 1, 'the polyfill resumed with Last-Event-ID');
    assert.ok(resumedByQuery.length >= 1, 'ReconnectingEventSource resumed with ?lastEventId');
    for (const q of toPrivate) assert.equal(q.headers.accept, 'text/event-stream');

    await page.screenshot({ path: screenshotPath('polyfill.png'), fullPage: true });
    assert.deepEqual(pageErrors, []);
  });

  test('loading the polyfill keeps a native EventSource', async (t) => {
    const defer = cleanupAfter(t);
    const { page, context } = await openPage(browser, statics.origin, { polyfill: true });
    defer(() => context.close());
    const result = await page.evaluate(() => ({
      polyfill: typeof window.EventSourcePolyfill,
      nativeKept: window.EventSource !== window.EventSourcePolyfill && /native code/.test(String(window.EventSource)),
    }));
    assert.deepEqual(result, { polyfill: 'function', nativeKept: true });
  });

  test('(f) parses CRLF/CR/LF, comments, multi-line data, retry and NUL ids; resumes with Last-Event-ID; fails on a bad response', async (t) => {
    const defer = cleanupAfter(t);
    const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
    const body = [
      Buffer.concat([BOM.subarray(0, 2)]),
      Buffer.concat([BOM.subarray(2), Buffer.from(': a comment\r\nretry: 150\r\nretry: 1x\n')]),
      'data: first\r\ndata:second-no-space\r\ndata:  two spaces\r\nid: one\r',
      '\n\r\n',
      'event: custom\rdata: cr-only\rid: bad\u0000id\r\r',
      'data\ndata\n\n',
      'id: two\n\n',
      'event: ignored-type\n\n',
      'data: after\n\n',
      'id\ndata: no-id\n\n',
      'id: three\ndata: unicode \u00e9 \u2713 \ud83d\ude00\nunknown: field\n: comment\n\n',
      'data: incomplete, never dispatched\n',
    ];
    const sse = await startSseServer(async (req, res, index) => {
      if (index === 0) {
        res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8' });
        for (const piece of body) {
          res.write(piece);
          await sleep(5);
        }
        res.end();
      } else {
        // Not an event stream: the polyfill must give up, not retry.
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('data: not for you\n\n');
      }
    });
    defer(() => sse.close());
    const { page, context, pageErrors } = await openPage(browser, statics.origin, { polyfill: true });
    defer(() => context.close());

    await page.evaluate((u) => openES('f', 'EventSourcePolyfill', u, {}, ['custom', 'ignored-type']), `${sse.origin}/parse`);
    await waitRec(page, 'f', (rec) => rec.errors.length >= 2);
    const r = await rec(page, 'f');
    const strip = (e) => [e.type, e.data, e.lastEventId];
    assert.deepEqual(r.events.map(strip), [
      ['message', 'first\nsecond-no-space\n two spaces', 'one'],
      ['custom', 'cr-only', 'one'],
      ['message', '\n', 'one'],
      ['message', 'after', 'two'],
      ['message', 'no-id', ''],
      ['message', 'unicode \u00e9 \u2713 \ud83d\ude00', 'three'],
    ]);
    for (const event of r.events) assert.equal(event.origin, sse.origin);
    // open, the events, error while CONNECTING (end of body), then the
    // second response fails the connection: error with CLOSED.
    assert.deepEqual(r.log, [
      'open:1',
      'event:message',
      'event:custom',
      'event:message',
      'event:message',
      'event:message',
      'event:message',
      'error:0',
      'error:2',
    ]);

    // No further request after failing (the retry would be 150 ms).
    await sleep(600);
    assert.equal(sse.requests.length, 2);
    assert.equal(await page.evaluate(() => window.records.f.es.readyState), 2);
    const [first, second] = sse.requests;
    assert.equal(first.headers.accept, 'text/event-stream');
    assert.equal(first.headers['cache-control'], 'no-cache');
    assert.equal(first.headers['last-event-id'], undefined);
    assert.equal(second.headers['last-event-id'], 'three');
    assert.equal(second.headers['cache-control'], 'no-cache');
    assert.ok(second.at - first.closedAt >= 100, `retry: 150 respected (${second.at - first.closedAt} ms)`);
    assert.deepEqual(pageErrors, []);
  });

  test('(f) exact chunk boundaries: BOM, CR|LF, and UTF-8 split across reads; request options', async (t) => {
    const defer = cleanupAfter(t);
    const { page, context, pageErrors } = await openPage(browser, statics.origin, { polyfill: true });
    defer(() => context.close());
    const result = await page.evaluate(async () => {
      const encoder = new TextEncoder();
      const bytes = (...parts) =>
        new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...encoder.encode(p)] : p)));
      const chunks = [
        bytes([0xef, 0xbb]),
        bytes([0xbf], 'data: a\r'),
        bytes('\ndata: b\r'),
        bytes('\n\r'),
        bytes('\n'),
        bytes('data: ', [0xc3]),
        bytes([0xa9], '\n\n'),
        bytes('data: x\r\r'),
        bytes('data: y\n\r\n'),
        bytes('\ufeffdata: not-a-field\n\n'),
        bytes('data: last\n\n'),
      ];
      const calls = [];
      // A scripted fetch: each chunk is one read of the body.
      window.fetch = (url, init) => {
        calls.push({
          url,
          accept: init.headers.get('Accept'),
          auth: init.headers.get('Authorization'),
          credentials: init.credentials,
          cache: init.cache,
          hasSignal: init.signal instanceof AbortSignal,
        });
        const body = new ReadableStream({
          start(controller) {
            for (const chunk of chunks) controller.enqueue(chunk);
          },
        });
        return Promise.resolve({
          status: 200,
          url,
          headers: new Headers({ 'Content-Type': 'Text/Event-Stream ; charset=utf-8' }),
          body,
        });
      };
      const received = [];
      const es = new EventSourcePolyfill('/chunks', { headers: { Authorization: 'Bearer abc' } });
      await new Promise((resolve) => {
        es.onmessage = (e) => {
          received.push(e.data);
          if (e.data === 'last') resolve();
        };
      });
      es.close();
      const withCredentials = new EventSourcePolyfill('https://elsewhere.example/x', { withCredentials: true });
      withCredentials.close();
      return {
        received,
        calls,
        url: es.url,
        withCredentials: [es.withCredentials, withCredentials.withCredentials],
        readyState: es.readyState,
      };
    });
    assert.deepEqual(result.received, ['a\nb', '\u00e9', 'x', 'y', 'last']);
    assert.equal(result.url, `${statics.origin}/chunks`);
    assert.deepEqual(result.calls, [
      {
        url: `${statics.origin}/chunks`,
        accept: 'text/event-stream',
        auth: 'Bearer abc',
        credentials: 'same-origin',
        cache: 'no-store',
        hasSignal: true,
      },
      {
        url: 'https://elsewhere.example/x',
        accept: 'text/event-stream',
        auth: null,
        credentials: 'include',
        cache: 'no-store',
        hasSignal: true,
      },
    ]);
    assert.deepEqual(result.withCredentials, [false, true]);
    assert.equal(result.readyState, 2);
    assert.deepEqual(pageErrors, []);
  });

  test('(g) heartbeatTimeout: a silent connection is aborted and re-established; bytes keep it alive', async (t) => {
    const defer = cleanupAfter(t);
    const HEARTBEAT = 400;
    let lastComment = 0;
    const sse = await startSseServer(async (req, res, index) => {
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      if (index === 0) {
        res.write('retry: 50\n\nid: s1\ndata: hello\n\n');
        // then silence, connection left open
      } else if (index === 1) {
        res.write('data: again\n\n');
        // comments only, for 1 s, then silence
        for (let i = 0; i < 10 && !res.destroyed; i++) {
          await sleep(100);
          res.write(':\n');
          lastComment = Date.now();
        }
      } else {
        res.write('data: third\n\n');
      }
    });
    defer(() => sse.close());
    const { page, context, pageErrors } = await openPage(browser, statics.origin, { polyfill: true });
    defer(() => context.close());

    await page.evaluate(
      ([u, h]) => openES('g', 'EventSourcePolyfill', u, { heartbeatTimeout: h }),
      [`${sse.origin}/silent`, HEARTBEAT]
    );
    await waitRec(page, 'g', (rec) => rec.events.length >= 3);
    await page.evaluate(() => window.records.g.es.close());
    await waitUntil(() => sse.requests.every((q) => q.closedAt !== null), { what: 'connections closed' });

    const r = await rec(page, 'g');
    assert.deepEqual(
      r.events.map((e) => [e.data, e.lastEventId]),
      [
        ['hello', 's1'],
        ['again', 's1'],
        ['third', 's1'],
      ]
    );
    assert.deepEqual(r.errors, [0, 0]);
    assert.equal(r.opens, 3);
    const [first, second, third] = sse.requests;
    assert.equal(sse.requests.length, 3);
    assert.ok(first.closedAt <= second.at + 5, 'the silent connection was aborted before the next request');
    assert.ok(first.closedAt - first.at >= HEARTBEAT - 20, `not aborted early (${first.closedAt - first.at} ms)`);
    assert.equal(second.headers['last-event-id'], 's1');
    assert.equal(third.headers['last-event-id'], 's1');
    // The comments of the second connection kept it alive for ~1 s; it was
    // dropped one heartbeat after the last of them.
    assert.ok(second.closedAt - second.at >= 1000, `kept alive by comments (${second.closedAt - second.at} ms)`);
    assert.ok(
      second.closedAt - lastComment >= HEARTBEAT - 50,
      `aborted a heartbeat after the last byte (${second.closedAt - lastComment} ms)`
    );
    assert.deepEqual(pageErrors, []);
  });
});
