// ReconnectingEventSource's shared mode in Chromium: the tabs of one browser
// context share one connection (Web Locks elect the leader, BroadcastChannel
// carries its events), against the project's example server.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  cleanupAfter,
  launchBrowser,
  makeJwt,
  publish,
  removeDir,
  screenshotPath,
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

const CHANNEL = 'room-s';

/**
 * A server and `count` tabs of one browser context (one origin: they share
 * locks and broadcast channels). `noLocks` removes navigator.locks, as on
 * an insecure origin. Every GET of the stream, from any tab, is recorded.
 */
async function setup(t, count, { noLocks = false } = {}) {
  const defer = cleanupAfter(t);
  const server = await startServer();
  defer(() => removeDir(server.dir));
  defer(() => server.stop());
  const context = await browser.newContext();
  defer(() => context.close());
  if (noLocks) {
    await context.addInitScript(() => {
      Object.defineProperty(Navigator.prototype, 'locks', { configurable: true, get: () => undefined });
    });
  }
  const streams = [];
  context.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith('/events') && request.method() === 'GET') streams.push(request.url());
  });
  const pageErrors = [];
  const tabs = [];
  for (let i = 0; i < count; i++) tabs.push(await newTab(context, pageErrors));
  const url = `${server.origin}/events/?channel=${CHANNEL}`;
  return { server, context, tabs, streams, pageErrors, url };
}

async function newTab(context, pageErrors) {
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  await page.goto(`${statics.origin}/page.html`);
  await page.waitForFunction(() => window.harnessReady === true);
  return page;
}

/** Opens a shared source named `s` in `page`, listening to `types`. */
function open(page, url, options = {}, types = ['message']) {
  return page.evaluate(
    ([u, o, w]) => window.openRES('s', u, { sharedKey: 'user:ann', ...o }, { types: w }),
    [url, options, types]
  );
}

/** The (type, id) of every event `page` dispatched, in order. */
const typed = (page) =>
  page.evaluate(() => window.records.s.rec.events.map((e) => [e.type, e.lastEventId]));

async function waitForEvents(page, count, timeout = 15000) {
  try {
    await page.waitForFunction((n) => window.records.s.rec.events.length >= n, count, { timeout, polling: 20 });
  } catch (error) {
    error.message += `\n  events so far: ${JSON.stringify(await typed(page))}`;
    throw error;
  }
}

/** Publishes chat, message, chat, message: ids 1 to 4. */
async function publishMixed(origin) {
  const types = ['chat', 'message', 'chat', 'message'];
  for (let i = 0; i < types.length; i++) {
    assert.equal(await publish(origin, CHANNEL, { n: i + 1 }, types[i]), `${CHANNEL}:${i + 1}`);
  }
  return types.map((type, i) => [type, `${CHANNEL}:${i + 1}`]);
}

const role = (page) => page.evaluate(() => window.records.s.es.role);
const ids = (page) =>
  page.evaluate(() => window.records.s.rec.events.filter((e) => e.type === 'message').map((e) => e.lastEventId));

function expectedIds(from, to) {
  const list = [];
  for (let n = from; n <= to; n++) list.push(`${CHANNEL}:${n}`);
  return list;
}

async function waitForIds(page, count, timeout = 15000) {
  try {
    await page.waitForFunction(
      (n) => window.records.s.rec.events.filter((e) => e.type === 'message').length >= n,
      count,
      { timeout, polling: 20 }
    );
  } catch (error) {
    error.message += `\n  ids so far: ${JSON.stringify(await ids(page))}`;
    throw error;
  }
}

async function waitForRole(page, wanted) {
  await page.waitForFunction((r) => window.records.s && window.records.s.es.role === r, wanted, { polling: 20 });
}

/** The leader's stream is subscribed (its `stream-open` arrived). */
async function waitForStreamOpen(page) {
  await page.waitForFunction(() => window.records.s.rec.streamOpens >= 1, null, { polling: 20 });
}

async function publishRange(origin, from, to) {
  for (let n = from; n <= to; n++) {
    assert.equal(await publish(origin, CHANNEL, { n }), `${CHANNEL}:${n}`);
  }
}

describe('ReconnectingEventSource, shared mode', () => {
  for (const [leaderTypes, followerTypes] of [
    [['message'], ['chat', 'message']],
    [['chat', 'message'], ['message']],
  ]) {
    test(`every tab gets the event types it listens to: leader ${leaderTypes}, follower ${followerTypes}`, async (t) => {
      const { server, tabs, streams, pageErrors, url } = await setup(t, 2);
      await open(tabs[0], url, {}, leaderTypes);
      await waitForRole(tabs[0], 'leader');
      await waitForStreamOpen(tabs[0]);
      await open(tabs[1], url, {}, followerTypes);
      await tabs[1].waitForFunction(() => window.records.s.es.state === 'live', null, { polling: 20 });
      assert.equal(await role(tabs[1]), 'follower');

      const sent = await publishMixed(server.origin);
      for (const [tab, types] of [
        [tabs[0], leaderTypes],
        [tabs[1], followerTypes],
      ]) {
        const wanted = sent.filter(([type]) => types.includes(type));
        await waitForEvents(tab, wanted.length);
        assert.deepEqual(await typed(tab), wanted);
      }
      assert.equal(streams.length, 1, 'one connection');
      assert.deepEqual(pageErrors, []);
    });
  }

  test("a type only a follower listens to reaches it after the leader's tab closes", async (t) => {
    const { server, tabs, pageErrors, url } = await setup(t, 3);
    await open(tabs[0], url, {}, ['message']);
    await waitForRole(tabs[0], 'leader');
    await waitForStreamOpen(tabs[0]);
    await open(tabs[1], url, {}, ['chat', 'message']);
    await open(tabs[2], url, {}, ['message']);
    for (const tab of tabs.slice(1)) {
      await tab.waitForFunction(() => window.records.s.es.state === 'live', null, { polling: 20 });
    }
    await tabs[0].close();
    const remaining = tabs.slice(1);
    await waitUntil(async () => (await Promise.all(remaining.map(role))).includes('leader'), {
      what: 'a new leader',
    });
    const leader = remaining[(await Promise.all(remaining.map(role))).indexOf('leader')];
    await leader.waitForFunction(() => window.records.s.es.state === 'live', null, { polling: 20 });
    await waitForStreamOpen(leader);

    const sent = await publishMixed(server.origin);
    await waitForEvents(tabs[1], 4);
    assert.deepEqual(await typed(tabs[1]), sent, 'chat and message, whichever tab leads');
    await waitForEvents(tabs[2], 2);
    assert.deepEqual(
      await typed(tabs[2]),
      sent.filter(([type]) => type === 'message')
    );
    assert.deepEqual(pageErrors, []);
  });

  test('three tabs share one connection and each gets every event once, in order', async (t) => {
    const { server, tabs, streams, pageErrors, url } = await setup(t, 3);
    await open(tabs[0], url);
    await waitForRole(tabs[0], 'leader');
    await waitForStreamOpen(tabs[0]);
    for (const tab of tabs.slice(1)) {
      await open(tab, url);
      await tab.waitForFunction(() => window.records.s.es.state === 'live', null, { polling: 20 });
    }
    assert.deepEqual(await Promise.all(tabs.map(role)), ['leader', 'follower', 'follower']);

    await publishRange(server.origin, 1, 20);
    for (const tab of tabs) {
      await waitForIds(tab, 20);
      assert.deepEqual(await ids(tab), expectedIds(1, 20));
    }
    assert.equal(streams.length, 1, `one stream for three tabs: ${JSON.stringify(streams)}`);
    // Followers mirror the state and readyState of the shared connection.
    for (const tab of tabs) {
      assert.deepEqual(
        await tab.evaluate(() => [window.records.s.es.state, window.records.s.es.readyState, window.records.s.rec.opens]),
        ['live', 1, 1]
      );
    }
    assert.deepEqual(pageErrors, []);
  });

  test("the leader's tab closes mid-stream: another takes over, nothing lost or repeated", async (t) => {
    const { server, tabs, streams, pageErrors, url } = await setup(t, 3);
    // Opened together: whichever tab's lock request reaches the browser
    // first leads.
    for (const tab of tabs) await open(tab, url);
    let leader;
    await waitUntil(
      async () => {
        const roles = await Promise.all(tabs.map(role));
        leader = tabs[roles.indexOf('leader')];
        return roles.filter((r) => r === 'leader').length === 1 && roles.filter((r) => r === 'follower').length === 2;
      },
      { timeout: 10000, what: 'one leader and two followers' }
    );
    await waitForStreamOpen(leader);
    for (const tab of tabs) await tab.waitForFunction(() => window.records.s.es.state === 'live', null, { polling: 20 });
    const remaining = tabs.filter((tab) => tab !== leader);

    // Events keep flowing while the leader's tab goes away, and after it
    // is gone: those only a new leader can bring. (Publishing all of them
    // around the close let a fast run deliver everything before the lock
    // changed hands, and then no tab was leader yet.)
    const total = 120;
    const publishing = publishRange(server.origin, 1, 60);
    await waitForIds(remaining[0], 40);
    await leader.close();
    await publishing;
    await publishRange(server.origin, 61, total);

    for (const tab of remaining) {
      await waitForIds(tab, total);
      assert.deepEqual(await ids(tab), expectedIds(1, total), 'every event once, in order');
    }
    const roles = (await Promise.all(remaining.map(role))).sort();
    assert.deepEqual(roles, ['follower', 'leader']);
    assert.equal(streams.length, 2, `the old leader's stream, then the new one's: ${JSON.stringify(streams)}`);
    // The new leader resumed from the shared cursor.
    assert.match(streams[1], /lastEventId=room-s%3A\d+/);
    await remaining[0].screenshot({ path: screenshotPath('shared-after-handover.png') });
    assert.deepEqual(pageErrors, []);
  });

  test('a tab joining behind the leader gets what it missed once; one ahead skips what it has', async (t) => {
    const { server, tabs, streams, url } = await setup(t, 3);
    await open(tabs[0], url);
    await waitForRole(tabs[0], 'leader');
    await waitForStreamOpen(tabs[0]);
    await publishRange(server.origin, 1, 5);
    await waitForIds(tabs[0], 5);

    // Rendered its history up to 2: the leader hands it 3..5.
    await open(tabs[1], url, { lastEventId: `${CHANNEL}:2` });
    await waitForIds(tabs[1], 3);
    // Rendered up to 7, which the leader has not seen yet: 6 and 7 are not
    // shown to it again.
    await publishRange(server.origin, 6, 6);
    await waitForIds(tabs[0], 6);
    await open(tabs[2], url, { lastEventId: `${CHANNEL}:7` });
    await tabs[2].waitForFunction(() => window.records.s.es.state === 'live', null, { polling: 20 });
    await publishRange(server.origin, 7, 8);

    await waitForIds(tabs[0], 8);
    await waitForIds(tabs[1], 6);
    await waitForIds(tabs[2], 1);
    assert.deepEqual(await ids(tabs[0]), expectedIds(1, 8));
    assert.deepEqual(await ids(tabs[1]), expectedIds(3, 8));
    assert.deepEqual(await ids(tabs[2]), expectedIds(8, 8));
    assert.equal(streams.length, 1);
  });

  test('a joining tab gets the stored events it missed, not past live-only ones', async (t) => {
    const { server, tabs, streams, url } = await setup(t, 2);
    // One stored channel and one live-only channel (`live-` in the example
    // server): live-only events move no cursor.
    const both = `${url}&channel=live-s`;
    const data = (page) =>
      page.evaluate(() => window.records.s.rec.events.filter((e) => e.type === 'message').map((e) => JSON.parse(e.data)));
    await open(tabs[0], both);
    await waitForRole(tabs[0], 'leader');
    await waitForStreamOpen(tabs[0]);
    await publishRange(server.origin, 1, 3);
    assert.equal(await publish(server.origin, 'live-s', { live: 1 }), null);
    await waitForIds(tabs[0], 4);

    // Rendered its history up to 1: it gets 2 and 3, and not the live
    // event that came before it joined.
    await open(tabs[1], both, { lastEventId: `${CHANNEL}:1` });
    await waitForIds(tabs[1], 2);
    assert.equal(await publish(server.origin, 'live-s', { live: 2 }), null);
    await publishRange(server.origin, 4, 4);
    await waitForIds(tabs[0], 6);
    await waitForIds(tabs[1], 4);
    assert.deepEqual(await data(tabs[0]), [{ n: 1 }, { n: 2 }, { n: 3 }, { live: 1 }, { live: 2 }, { n: 4 }]);
    assert.deepEqual(await data(tabs[1]), [{ n: 2 }, { n: 3 }, { live: 2 }, { n: 4 }]);
    assert.equal(streams.length, 1);
  });

  test('a follower that sees a gap asks the leader again instead of skipping ahead', async (t) => {
    const { server, tabs, streams, pageErrors, url } = await setup(t, 2);
    await open(tabs[0], url);
    await waitForRole(tabs[0], 'leader');
    await waitForStreamOpen(tabs[0]);
    await open(tabs[1], url);
    await tabs[1].waitForFunction(() => window.records.s.es.state === 'live', null, { polling: 20 });
    await publishRange(server.origin, 1, 3);
    for (const tab of tabs) await waitForIds(tab, 3);

    // A forwarded event that follows one the follower never got (room-s:8,
    // as when a leader's last forward is lost): the follower must not show
    // it and then take 4 and 5 for repeats. It asks again: the leader
    // answers with a welcome, seen here on the group's channel (named as
    // sharedName names it).
    const welcomed = await tabs[0].evaluate(
      (u) =>
        new Promise((resolve) => {
          const name = 'eventstream-rocket ' + JSON.stringify(['user:ann', new URL(u).href]);
          const listen = new BroadcastChannel(name);
          const done = (answer) => {
            listen.close();
            resolve(answer);
          };
          listen.onmessage = (m) => m.data.kind === 'welcome' && done(true);
          setTimeout(() => done(false), 5000);
          const send = new BroadcastChannel(name);
          const event = { type: 'message', data: '{"n":9}', id: 'room-s:9', previous: 'room-s:8' };
          send.postMessage({ kind: 'event', from: 'elsewhere', event });
          send.close();
        }),
      url
    );
    assert.ok(welcomed, 'the follower asked the leader again');
    await publishRange(server.origin, 4, 5);
    for (const tab of tabs) {
      await waitForIds(tab, 5);
      assert.deepEqual(await ids(tab), expectedIds(1, 5));
    }
    assert.equal(await role(tabs[1]), 'follower');
    assert.equal(streams.length, 1);
    assert.deepEqual(pageErrors, []);
  });

  test('tabs share whatever their tokens; another sharedKey gets its own connection', async (t) => {
    const { server, tabs, streams, pageErrors, url } = await setup(t, 3);
    // Ann's tabs hold different tokens (minted with different lifetimes):
    // the token is not part of what they share by.
    const annToken = (ttlSecs) => `${url}&token=${makeJwt('ann', { ttlSecs })}`;
    await open(tabs[0], annToken(3600));
    await waitForRole(tabs[0], 'leader');
    await waitForStreamOpen(tabs[0]);
    await open(tabs[1], annToken(7200));
    await tabs[1].waitForFunction(() => window.records.s.es.state === 'live', null, { polling: 20 });
    // Bob's tab, same url: his key keeps him off Ann's connection.
    await open(tabs[2], `${url}&token=${makeJwt('bob')}`, { sharedKey: 'user:bob' });
    await waitForRole(tabs[2], 'leader');
    await waitForStreamOpen(tabs[2]);
    assert.deepEqual(await Promise.all(tabs.map(role)), ['leader', 'follower', 'leader']);

    await publishRange(server.origin, 1, 5);
    for (const tab of tabs) {
      await waitForIds(tab, 5);
      assert.deepEqual(await ids(tab), expectedIds(1, 5));
    }
    assert.equal(streams.length, 2, `Ann's stream and Bob's: ${JSON.stringify(streams)}`);
    assert.deepEqual(pageErrors, []);
  });

  test('without navigator.locks each tab connects on its own, as without sharedKey', async (t) => {
    const { server, tabs, streams, url } = await setup(t, 2, { noLocks: true });
    for (const tab of tabs) {
      await open(tab, url);
      await waitForStreamOpen(tab);
    }
    assert.deepEqual(await Promise.all(tabs.map(role)), ['alone', 'alone']);
    await publishRange(server.origin, 1, 3);
    for (const tab of tabs) {
      await waitForIds(tab, 3);
      assert.deepEqual(await ids(tab), expectedIds(1, 3));
    }
    assert.equal(streams.length, 2);
  });
});
