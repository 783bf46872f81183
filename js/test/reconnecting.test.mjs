// ReconnectingEventSource in Chromium, against the project's example server.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  PUBLISH_KEY,
  cleanupAfter,
  launchBrowser,
  makeJwt,
  openPage,
  publish,
  removeDir,
  screenshotPath,
  startServer,
  startStaticServer,
  waitUntil,
  sleep,
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

async function setup(t, options = {}) {
  const defer = cleanupAfter(t);
  const server = await startServer();
  defer(() => removeDir(server.dir));
  defer(() => server.stop());
  const opened = await openPage(browser, statics.origin, options);
  defer(() => opened.context.close());
  return { defer, server, ...opened };
}

const rec = (page, name) => page.evaluate((n) => window.records[n].rec, name);

async function waitRec(page, name, predicate, arg, timeout = 15000) {
  try {
    await waitRecInner(page, name, predicate, arg, timeout);
  } catch (error) {
    const state = await page.evaluate((n) => JSON.stringify(window.records[n] && window.records[n].rec), name).catch(() => '?');
    error.message += `\n  waiting for ${predicate}\n  records.${name}: ${state}`;
    throw error;
  }
}

async function waitRecInner(page, name, predicate, arg, timeout) {
  await page.waitForFunction(
    ([n, source, a]) => {
      const entry = window.records[n];
      // eslint-disable-next-line no-new-func
      return entry && new Function('rec', 'es', 'arg', `return (${source})(rec, es, arg);`)(entry.rec, entry.es, a);
    },
    [name, predicate.toString(), arg],
    { timeout, polling: 20 }
  );
}

// Tests publish only after `stream-open`: the server sends the 200 head
// (which fires `open`) before it subscribes the stream and reads the
// channels' positions, so an event published right after `open` can land
// before a fresh stream's starting point.

describe('ReconnectingEventSource', () => {
  test('(a) receives published events with their ids and data, on every listened type', async (t) => {
    const { page, server, requests, pageErrors } = await setup(t);
    const url = `${server.origin}/events/?channel=room-a`;
    await page.evaluate((u) => openRES('a', u, {}, { types: ['message', 'chat'] }), url);
    await waitRec(page, 'a', (rec) => rec.streamOpens === 1);

    const sent = [
      [{ n: 1 }, undefined],
      [{ text: 'h\u00e9 \u2713' }, 'chat'],
      ['a string', 'message'],
    ];
    const ids = [];
    for (const [data, type] of sent) ids.push(await publish(server.origin, 'room-a', data, type));
    assert.deepEqual(ids, ['room-a:1', 'room-a:2', 'room-a:3']);

    await waitRec(page, 'a', (rec) => rec.events.length >= 3);
    const r = await rec(page, 'a');
    assert.deepEqual(
      r.events.map((e) => [e.type, JSON.parse(e.data), e.lastEventId, e.esLastEventId]),
      [
        ['message', { n: 1 }, 'room-a:1', 'room-a:1'],
        ['chat', { text: 'h\u00e9 \u2713' }, 'room-a:2', 'room-a:2'],
        ['message', 'a string', 'room-a:3', 'room-a:3'],
      ]
    );
    assert.deepEqual(r.states, ['connecting', 'live']);
    assert.equal(r.errors, 0);

    const api = await page.evaluate(() => {
      const es = window.records.a.es;
      const out = {
        lastEventId: es.lastEventId,
        readyState: es.readyState,
        state: es.state,
        url: es.url,
        withCredentials: es.withCredentials,
        constants: [
          ReconnectingEventSource.CONNECTING,
          ReconnectingEventSource.OPEN,
          ReconnectingEventSource.CLOSED,
          es.CONNECTING,
          es.OPEN,
          es.CLOSED,
        ],
      };
      es.lastEventId = 'overwritten?';
      out.lastEventIdAfterWrite = es.lastEventId;
      try {
        new ReconnectingEventSource('/x', { eventSourceClass: 42 });
        out.thrown = null;
      } catch (error) {
        out.thrown = [error.name, error instanceof EventSourceNotAvailableError, error instanceof Error];
      }
      es.close();
      out.afterClose = [es.readyState, es.state, window.records.a.rec.states.slice()];
      return out;
    });
    assert.deepEqual(api, {
      lastEventId: 'room-a:3',
      readyState: 1,
      state: 'live',
      url,
      withCredentials: false,
      constants: [0, 1, 2, 0, 1, 2],
      lastEventIdAfterWrite: 'room-a:3',
      thrown: ['EventSourceNotAvailableError', true, true],
      afterClose: [2, 'closed', ['connecting', 'live', 'closed']],
    });
    assert.equal(requests.length, 1);
    assert.equal(new URL(requests[0].url).searchParams.get('lastEventId'), null);
    assert.deepEqual(pageErrors, []);
  });

  test('(b) the server is killed and restarted: every missed event arrives once, in order', async (t) => {
    const { page, server, requests, pageErrors, defer } = await setup(t);
    const url = `${server.origin}/events/room-b`;
    await page.evaluate((u) => openRES('b', u, { max_retry_time: 1000 }), url);
    await waitRec(page, 'b', (rec) => rec.streamOpens === 1);
    for (let n = 1; n <= 2; n++) await publish(server.origin, 'room-b', { n });
    await waitRec(page, 'b', (rec) => rec.events.length >= 2);

    await server.stop('SIGKILL');
    await waitRec(page, 'b', (rec) => rec.states.includes('reconnecting'));

    // A new process on the same port and the same SQLite file; the client is
    // retrying meanwhile (it may reconnect before, between or after these).
    const second = await startServer({ port: server.port, dir: server.dir });
    defer(() => second.stop());
    for (let n = 3; n <= 5; n++) await publish(second.origin, 'room-b', { n });
    await waitRec(page, 'b', (rec) => rec.streamOpens === 2);
    // A marker after the reconnection: anything missing or repeated shows up
    // before it, as events of one connection arrive in id order.
    assert.equal(await publish(second.origin, 'room-b', { n: 6 }), 'room-b:6');
    await waitRec(page, 'b', (rec) => rec.events.some((e) => e.lastEventId === 'room-b:6'));

    const r = await rec(page, 'b');
    assert.deepEqual(
      r.events.map((e) => [e.lastEventId, JSON.parse(e.data).n]),
      [1, 2, 3, 4, 5, 6].map((n) => [`room-b:${n}`, n])
    );
    assert.deepEqual(r.states, ['connecting', 'live', 'reconnecting', 'live']);
    assert.equal(r.errors, 1, 'onerror once per outage');
    assert.deepEqual(r.ready, [
      ['open', 1],
      ['error', 0],
      ['open', 1],
    ]);
    const resumed = requests.filter((q) => new URL(q.url).searchParams.get('lastEventId') !== null);
    assert.ok(resumed.length >= 1, 'reconnects carry lastEventId');
    for (const q of resumed) {
      assert.ok(q.url.startsWith(`${url}?lastEventId=`), q.url);
      assert.equal(new URL(q.url).searchParams.get('lastEventId'), 'room-b:2');
    }
    assert.ok(requests.at(-1).url.endsWith('?lastEventId=room-b%3A2'), requests.at(-1).url);

    await page.screenshot({ path: screenshotPath('reconnecting-eventsource.png'), fullPage: true });
    assert.deepEqual(pageErrors, []);
  });

  test('(c) `onmessage = fn` alone keeps the id: a resume misses and repeats nothing', async (t) => {
    const { page, server, requests, pageErrors, defer } = await setup(t);
    const url = `${server.origin}/events/room-c`;
    // No listener for `message` (the harness only counts `stream-open`).
    await page.evaluate((u) => openRES('c', u, { max_retry_time: 500 }, { onmessageOnly: true }), url);
    await waitRec(page, 'c', (rec) => rec.streamOpens === 1);
    for (let n = 1; n <= 2; n++) await publish(server.origin, 'room-c', { n });
    await waitRec(page, 'c', (rec) => rec.events.length >= 2);

    await server.stop('SIGKILL');
    await waitRec(page, 'c', (rec) => rec.states.includes('reconnecting'));
    // Publish through another process on the same database while the
    // client's port is down, so these can only arrive by resuming.
    const side = await startServer({ dir: server.dir });
    defer(() => side.stop());
    for (let n = 3; n <= 4; n++) await publish(side.origin, 'room-c', { n });
    await side.stop();

    const second = await startServer({ port: server.port, dir: server.dir });
    defer(() => second.stop());
    await waitRec(page, 'c', (rec) => rec.streamOpens === 2);
    await publish(second.origin, 'room-c', { n: 5 });
    await waitRec(page, 'c', (rec) => rec.events.some((e) => e.lastEventId === 'room-c:5'));

    const r = await rec(page, 'c');
    assert.deepEqual(
      r.events.map((e) => [e.type, e.lastEventId, JSON.parse(e.data).n]),
      [1, 2, 3, 4, 5].map((n) => ['message', `room-c:${n}`, n])
    );
    assert.equal(requests.at(-1).url, `${url}?lastEventId=room-c%3A2`);
    assert.equal(await page.evaluate(() => window.records.c.es.lastEventId), 'room-c:5');
    assert.deepEqual(pageErrors, []);
  });

  test('(d) stream-error closes for good: onstreamerror with the condition, no reconnection', async (t) => {
    const { page, server, requests, pageErrors } = await setup(t);
    const url = `${server.origin}/events/_private`;
    await page.evaluate((u) => openRES('d', u, { max_retry_time: 200 }, { types: ['message', 'stream-error'] }), url);
    await waitRec(page, 'd', (rec) => rec.streamErrors.length === 1);

    let r = await rec(page, 'd');
    const payload = JSON.parse(r.streamErrors[0].event.data);
    assert.equal(payload.condition, 'forbidden');
    assert.deepEqual(payload.channels, ['_private']);
    assert.equal(r.streamErrors[0].event.lastEventId, 'error');
    assert.equal(r.streamErrors[0].readyState, 2);
    assert.equal(r.streamErrors[0].state, 'error');
    assert.deepEqual(
      r.events.map((e) => e.type),
      ['stream-error'],
      'addEventListener("stream-error") listeners run too'
    );

    // Longer than the server's keep-alive interval and than the browser's
    // own 3 s retry: a source that was not really closed would reconnect.
    await sleep(3500);
    r = await rec(page, 'd');
    const state = await page.evaluate(() => [window.records.d.es.readyState, window.records.d.es.state, window.records.d.es.lastEventId]);
    assert.deepEqual(state, [2, 'error', '']);
    assert.equal(requests.length, 1, 'one request only');
    assert.equal(r.opens, 1);
    assert.equal(r.errors, 0);
    assert.equal(r.streamErrors.length, 1);
    assert.deepEqual(r.states, ['connecting', 'live', 'error']);
    assert.deepEqual(pageErrors, []);
  });

  test('(h) stream-reset reaches onreset, state "reset" then "live", and its id is kept', async (t) => {
    const { page, server, requests, pageErrors } = await setup(t);
    assert.equal(await publish(server.origin, 'room-h', { n: 1 }), 'room-h:1');
    const url = `${server.origin}/events/?channel=room-h`;
    await page.evaluate(
      (u) => openRES('h', u, { lastEventId: 'room-h:99' }, { types: ['message', 'stream-reset'] }),
      url
    );
    await waitRec(page, 'h', (rec) => rec.resets.length === 1);
    assert.equal(requests[0].url, `${url}&lastEventId=room-h%3A99`);

    await publish(server.origin, 'room-h', { n: 2 });
    await waitRec(page, 'h', (rec) => rec.events.some((e) => e.lastEventId === 'room-h:2'));
    const r = await rec(page, 'h');
    assert.deepEqual(JSON.parse(r.resets[0].event.data), { channels: ['room-h'] });
    assert.equal(r.resets[0].event.lastEventId, 'room-h:1');
    assert.equal(r.resets[0].state, 'reset');
    assert.equal(r.resets[0].esLastEventId, 'room-h:1');
    assert.deepEqual(r.states, ['connecting', 'live', 'reset', 'live']);
    assert.deepEqual(
      r.events.map((e) => [e.type, e.lastEventId]),
      [
        ['stream-reset', 'room-h:1'],
        ['message', 'room-h:2'],
      ]
    );
    assert.deepEqual(pageErrors, []);
  });

  test('(p) presence: true asks for stream-presence, which reaches onpresence and moves no id', async (t) => {
    const { page, server, requests, pageErrors } = await setup(t);
    assert.equal(await publish(server.origin, 'room-p', { n: 1 }), 'room-p:1');
    const url = `${server.origin}/events/?channel=room-p`;
    await page.evaluate((u) => {
      openRES('p', u, { presence: true }, { types: ['message'] });
      const entry = window.records.p;
      entry.rec.presence = [];
      entry.es.onpresence = (event) =>
        entry.rec.presence.push({ data: JSON.parse(event.data), esLastEventId: entry.es.lastEventId });
    }, url);
    await waitRec(page, 'p', (rec) => rec.presence.length === 1);
    assert.equal(requests[0].url, `${url}&presence=1`);
    // A second reader: the first is told within the server's interval.
    await page.evaluate((u) => openRES('q', u, {}, { types: ['message'] }), url);
    await waitRec(page, 'p', (rec) => rec.presence.some((p) => p.data.streams === 2));
    await publish(server.origin, 'room-p', { n: 2 });
    await waitRec(page, 'p', (rec) => rec.events.some((e) => e.lastEventId === 'room-p:2'));
    const r = await rec(page, 'p');
    assert.deepEqual(r.presence[0].data, { channel: 'room-p', streams: 1, users: 0 });
    assert.equal(r.presence[0].esLastEventId, 'room-p:1', 'presence moved no id');
    const q = await rec(page, 'q');
    assert.equal(q.events.length, 1, 'the reader that did not ask got its message only');
    assert.deepEqual(pageErrors, []);
  });

  test('(k) a signed-in stream whose token expired renews it across a server restart: nothing lost or repeated', async (t) => {
    const defer = cleanupAfter(t);
    let server = await startServer();
    const { port, dir } = server;
    defer(() => removeDir(dir));
    defer(() => server.stop());
    // The page's own origin hands out fresh tokens, as an app's would.
    let handedOut = 0;
    const site = await startStaticServer((req, res, url) => {
      if (url.pathname !== '/token') return false;
      handedOut++;
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store' });
      res.end(makeJwt('ann', { ttlSecs: 3600 }));
      return true;
    });
    defer(() => site.close());
    const { page, context, pageErrors } = await openPage(browser, site.origin);
    defer(() => context.close());
    // A short lifetime, set by the test: it expires while the stream is
    // open (the server tolerates 5 s of clock skew).
    const first = makeJwt('ann', { ttlSecs: 1 });
    // The server refuses it once its whole-second clock is past `exp` + 5.
    const { exp } = JSON.parse(Buffer.from(first.split('.')[1], 'base64url').toString());
    const expiredAt = (exp + 5 + 1) * 1000;
    const url = `${server.origin}/events/?channel=_k`;
    await page.evaluate(([u, token]) => openSignedRES('k', u, token, '/token', { debug: true }), [url, first]);
    await waitRec(page, 'k', (rec) => rec.streamOpens === 1);
    for (let n = 1; n <= 5; n++) await publish(server.origin, '_k', { n });
    await waitRec(page, 'k', (rec) => rec.events.length >= 5);

    // Past the expiry, the server restarts: the old token is refused as
    // expired, the page is asked once for a fresh one, and the stream
    // goes on from where it was.
    await sleep(Math.max(0, expiredAt + 250 - Date.now()));
    await server.stop();
    server = await startServer({ port, dir });
    for (let n = 6; n <= 10; n++) await publish(server.origin, '_k', { n });
    await waitRec(page, 'k', (rec) => rec.events.length >= 10);
    const r = await rec(page, 'k');
    assert.deepEqual(
      r.events.map((e) => e.lastEventId),
      Array.from({ length: 10 }, (_, i) => `_k:${i + 1}`),
      'every message once, in order'
    );
    assert.deepEqual(r.streamErrors, [], 'the expiry was not an end');
    assert.equal(await page.evaluate(() => window.records.k.renewals.count), 1);
    assert.equal(handedOut, 1);
    assert.equal(r.states[r.states.length - 1], 'live');
    assert.deepEqual(pageErrors, []);
  });

  test('(l) an expired credential without renewCredentials, or one renewed in vain, ends the stream', async (t) => {
    const { page, server, pageErrors } = await setup(t);
    const expired = makeJwt('ann', { ttlSecs: -3600 });
    await page.evaluate(
      (u) => openRES('l', u),
      `${server.origin}/events/?channel=_l&token=${expired}`
    );
    await waitRec(page, 'l', (rec) => rec.streamErrors.length === 1);
    const r = await rec(page, 'l');
    assert.equal(JSON.parse(r.streamErrors[0].event.data).condition, 'credentials-expired');
    assert.equal(r.streamErrors[0].state, 'error');
    // Renewed, but the page hands out an expired one again: it gives up.
    await page.evaluate(
      ([u, token]) => {
        window.renewCalls = 0;
        window.openRES('m', () => u + '&token=' + token, {
          renewCredentials: () => {
            window.renewCalls++;
            return Promise.resolve();
          },
        });
      },
      [`${server.origin}/events/?channel=_l`, expired]
    );
    await waitRec(page, 'm', (rec) => rec.streamErrors.length === 1);
    assert.equal(await page.evaluate(() => window.renewCalls), 1);
    assert.deepEqual(pageErrors, []);
  });

  test('(n) an event withheld from the user: the next one moves one entry, and a restart from the cursor repeats nothing', async (t) => {
    const { page, server, pageErrors } = await setup(t);
    const token = makeJwt('ann', { ttlSecs: 3600 });
    const url = `${server.origin}/events/?channel=a&channel=b&token=${token}`;
    await page.evaluate((u) => openRES('n', u, {}, { types: ['message', 'keep-alive'] }), url);
    await waitRec(page, 'n', (rec) => rec.streamOpens === 1);
    const withheld = await fetch(`${server.origin}/events/a`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${PUBLISH_KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ data: 'not for ann', skip_user_ids: ['ann'] }),
    });
    assert.equal(withheld.status, 201);
    await publish(server.origin, 'b', 'for ann');
    await waitRec(page, 'n', (rec) => rec.events.some((e) => e.type === 'message'));
    const first = await rec(page, 'n');
    const vectors = ['a:0,b:0', ...first.events.map((e) => e.lastEventId)];
    for (let i = 1; i < vectors.length; i++) {
      const before = vectors[i - 1].split(',');
      const after = vectors[i].split(',');
      const moved = after.filter((entry, k) => entry !== before[k]).length;
      assert.ok(moved <= 1, `one entry per frame: ${JSON.stringify(vectors)}`);
    }
    const cursor = await page.evaluate(() => window.records.n.es.lastEventId);
    assert.equal(cursor, 'a:1,b:1');
    // The page restarts from its cursor: nothing comes again.
    await page.evaluate(
      ([u, c]) => {
        window.records.n.es.close();
        openRES('o', u, { lastEventId: c });
      },
      [url, cursor]
    );
    await waitRec(page, 'o', (rec) => rec.streamOpens === 1);
    await publish(server.origin, 'b', 'next');
    await waitRec(page, 'o', (rec) => rec.events.length >= 1);
    const again = await rec(page, 'o');
    assert.deepEqual(
      again.events.map((e) => [e.lastEventId, e.data]),
      [['a:1,b:2', '"next"']]
    );
    assert.deepEqual(pageErrors, []);
  });

  test('backoff, resume parameter and options, with a scripted EventSource class', async (t) => {
    const { page, pageErrors } = await setup(t);
    const result = await page.evaluate(async () => {
      // A stand-in EventSource: each instance opens or fails as scripted.
      const made = [];
      const script = ['fail', 'fail', 'fail', 'open-then-message-then-fail', 'fail', 'fail', 'open'];
      class Scripted {
        constructor(url, init) {
          this.url = url;
          this.init = init;
          this.listeners = {};
          this.closed = false;
          this.made = performance.now();
          const step = script[made.length] || 'fail';
          made.push(this);
          setTimeout(() => {
            if (this.closed) return;
            if (step.startsWith('open')) this.onopen && this.onopen(new Event('open'));
            if (step.includes('message')) {
              const event = new MessageEvent('message', { data: 'x', lastEventId: 'c h:7' });
              (this.listeners.message || []).forEach((fn) => fn(event));
            }
            if (step.endsWith('fail') && !this.closed) this.onerror && this.onerror(new Event('error'));
          }, 1);
        }
        addEventListener(type, fn) {
          (this.listeners[type] ||= []).push(fn);
        }
        close() {
          this.closed = true;
        }
      }
      const states = [];
      let errors = 0;
      let opens = 0;
      const es = new ReconnectingEventSource('/stream?channel=a#frag', {
        eventSourceClass: Scripted,
        max_retry_time: 1000,
        withCredentials: true,
        headers: { Authorization: 'Bearer t' },
        heartbeatTimeout: 1234,
      });
      es.onstatechange = (s) => states.push(s);
      es.onerror = () => errors++;
      es.onopen = () => opens++;
      const deadline = performance.now() + 15000;
      while (made.length < script.length && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 20));
      es.close();
      return {
        urls: made.map((m) => m.url),
        gaps: made.slice(1).map((m, i) => m.made - made[i].made),
        inits: made.map((m) => JSON.stringify(m.init)),
        closedAll: made.every((m) => m.closed),
        states,
        errors,
        opens,
        lastEventId: es.lastEventId,
      };
    });
    assert.equal(result.urls.length, 7);
    assert.deepEqual(result.urls, [
      '/stream?channel=a#frag',
      '/stream?channel=a#frag',
      '/stream?channel=a#frag',
      '/stream?channel=a#frag',
      '/stream?channel=a&lastEventId=c%20h%3A7#frag',
      '/stream?channel=a&lastEventId=c%20h%3A7#frag',
      '/stream?channel=a&lastEventId=c%20h%3A7#frag',
    ]);
    // Delay before attempt k: random(0.5..1) * min(1000, 250 * 2^k), where
    // k restarts at 0 after the open of the 4th instance.
    const ceilings = [250, 500, 1000, 250, 500, 1000];
    result.gaps.forEach((gap, i) => {
      assert.ok(gap >= ceilings[i] * 0.5 - 5, `gap ${i} = ${gap} ms, expected >= ${ceilings[i] * 0.5}`);
      assert.ok(gap <= ceilings[i] + 300, `gap ${i} = ${gap} ms, expected <= ${ceilings[i]} (+ timer slack)`);
    });
    for (const init of result.inits) {
      assert.deepEqual(JSON.parse(init), {
        withCredentials: true,
        headers: { Authorization: 'Bearer t' },
        heartbeatTimeout: 1234,
      });
    }
    assert.ok(result.closedAll, 'every replaced EventSource was closed');
    assert.deepEqual(result.states, ['connecting', 'reconnecting', 'live', 'reconnecting', 'live', 'closed']);
    assert.equal(result.errors, 2, 'onerror: the first failure and the drop of the open connection');
    assert.equal(result.opens, 2);
    assert.equal(result.lastEventId, 'c h:7');
    assert.deepEqual(pageErrors, []);
  });
});
