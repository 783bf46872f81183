// End-to-end: the demo app generated from this checkout, in headless
// Chromium. Run by scripts/test.sh after it generates and builds the app:
//
//   DEMO_APP_DIR=/tmp/x/demo-app DEMO_APP_BIN=target/debug/demo-app node --test e2e/
//
// Each test asserts what a person would see: messages appearing, the
// connection indicator, refusals, and every missed message shown once after
// the server comes back.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ARTIFACTS, freePort, launchBrowser, makeTempDir, removeDir, waitUntil } from '../test/helpers.mjs';

const APP_DIR = process.env.DEMO_APP_DIR;
const APP_BIN = process.env.DEMO_APP_BIN;
const PUBLISH_KEY = 'dev-only-publish-key-do-not-deploy';

/** Starts the app on `port` with its SQLite file in `dataDir`. */
async function startApp(port, dataDir) {
  const child = spawn(APP_BIN, [], {
    cwd: APP_DIR,
    env: {
      ...process.env,
      ROCKET_PORT: String(port),
      ROCKET_ADDRESS: '127.0.0.1',
      ROCKET_LOG_LEVEL: 'critical',
      ROCKET_DATABASES: `{eventstream={url="sqlite://${dataDir}/demo.db"}}`,
      ROCKET_EVENTSTREAM: '{keepalive_secs=2}',
      ROCKET_SHUTDOWN: '{grace=1,mercy=1}',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await waitUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`the app exited early: ${stderr}`);
      try {
        const response = await fetch(`http://127.0.0.1:${port}/rooms/lobby/history`);
        return response.ok;
      } catch {
        return false;
      }
    },
    { timeout: 30000, what: `the app on port ${port}` },
  );
  return {
    origin: `http://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

async function publish(origin, text) {
  const response = await fetch(`${origin}/events/lobby`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${PUBLISH_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ data: { id: 0, room: 'lobby', author: 'api', text } }),
  });
  assert.equal(response.status, 201, `publish of ${text}`);
}

async function post(origin, text) {
  const response = await fetch(`${origin}/rooms/lobby/messages`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ author: 'second-instance', text }),
  });
  assert.equal(response.status, 201, `post of ${text}`);
}

const texts = (page) => page.$$eval('#messages li span', (spans) => spans.map((span) => span.textContent));
const state = (page) => page.$eval('#status', (status) => status.dataset.state);

async function waitForText(page, text, timeout = 1000) {
  await page.waitForFunction(
    (wanted) => [...document.querySelectorAll('#messages li span')].some((span) => span.textContent === wanted),
    text,
    { timeout },
  );
}

let browser;
let dataDir;
let port;
let app;

before(async () => {
  assert.ok(APP_DIR && existsSync(path.join(APP_DIR, 'Rocket.toml')), 'DEMO_APP_DIR must be a generated project');
  assert.ok(APP_BIN && existsSync(APP_BIN), 'DEMO_APP_BIN must be the built demo app');
  dataDir = makeTempDir('demo-e2e-');
  port = await freePort();
  app = await startApp(port, dataDir);
  browser = await launchBrowser();
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await app?.stop();
  if (dataDir) removeDir(dataDir);
});

test('a clean load has no console error, a favicon, and says what is private and that sign-in is a demo', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error}`));
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`);
  });
  await page.goto(app.origin + '/');
  await page.waitForSelector('#status[data-state="live"]');
  const icon = await page.$eval('link[rel="icon"]', (link) => link.href);
  const fetched = await page.evaluate(async (href) => {
    const response = await fetch(href);
    return [response.status, response.headers.get('content-type')];
  }, icon);
  assert.equal(fetched[0], 200, `the favicon at ${icon}`);
  assert.match(fetched[1], /^image\/svg\+xml/);
  const about = await page.textContent('#about');
  assert.match(about, /_staff/);
  assert.match(about, /private/);
  assert.match(about, /demo/);
  assert.deepEqual(problems, [], 'a clean load');
  await context.close();
});

test('messages from another tab and from the publish API appear within a second', async () => {
  const page = await browser.newPage();
  await page.goto(app.origin + '/');
  await page.waitForSelector('#status[data-state="live"]');
  const other = await browser.newPage();
  await other.goto(app.origin + '/');
  await other.waitForSelector('#status[data-state="live"]');

  await other.fill('#send input[name="author"]', 'bea');
  await other.fill('#send input[name="text"]', 'hello from the second tab');
  await other.click('#send button');
  await waitForText(page, 'hello from the second tab', 1000);

  await publish(app.origin, 'hello from the publish API');
  await waitForText(page, 'hello from the publish API', 1000);
  await waitForText(other, 'hello from the publish API', 1000);
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-live.png') });
  await other.close();
  await page.close();
});

test('signed in by its cookie, a tab reads the private room; an anonymous tab is refused', async () => {
  const page = await browser.newPage();
  const streams = [];
  page.on('request', (request) => {
    if (request.url().includes('/events/')) streams.push(request.url());
  });
  await page.goto(app.origin + '/');
  await page.waitForSelector('#status[data-state="live"]');
  await page.click('button[data-room="_staff"]');
  await page.waitForSelector('#status[data-state="forbidden"]');
  assert.match(await page.textContent('#notice'), /private/);

  await page.fill('#sign-in input[name="name"]', 'ann');
  await page.click('#sign-in button');
  await page.waitForSelector('#status[data-state="live"]');
  assert.equal(await page.textContent('#who'), 'signed in as ann');
  await page.fill('#send input[name="text"]', 'for staff only');
  await page.click('#send button');
  await waitForText(page, 'for staff only', 1000);
  assert.ok(streams.some((url) => url.includes('/events/_staff')), 'the private room was streamed');
  assert.deepEqual(
    streams.filter((url) => url.includes('token=')),
    [],
    'no token in any stream URL: the cookie signs the tab in',
  );
  const cookies = await page.context().cookies();
  assert.ok(cookies.some((cookie) => cookie.httpOnly && cookie.name.endsWith('_user')), 'an HttpOnly sign-in cookie');

  // Another tab, in a context of its own (no cookie): refused.
  const anonymous = await browser.newContext();
  const other = await anonymous.newPage();
  await other.goto(app.origin + '/');
  await other.waitForSelector('#status[data-state="live"]');
  await other.click('button[data-room="_staff"]');
  await other.waitForSelector('#status[data-state="forbidden"]');
  assert.equal((await texts(other)).includes('for staff only'), false, 'nothing private shown');
  await anonymous.close();
  await page.close();
});

test('readers of a room see who else reads it, by name once signed in', async () => {
  const contexts = [await browser.newContext(), await browser.newContext()];
  const pages = [];
  for (const [context, name] of [[contexts[0], 'cleo'], [contexts[1], 'dan']]) {
    const page = await context.newPage();
    await page.goto(app.origin + '/');
    await page.waitForSelector('#status[data-state="live"]');
    await page.fill('#sign-in input[name="name"]', name);
    await page.click('#sign-in button');
    await page.waitForFunction((n) => document.getElementById('who').textContent === 'signed in as ' + n, name);
    await page.waitForSelector('#status[data-state="live"]');
    pages.push(page);
  }
  // Within the server's presence interval (1 s), with room for the page.
  for (const page of pages) {
    await page.waitForFunction(
      () => /reading: .*cleo, dan/.test(document.getElementById('presence').textContent),
      null,
      { timeout: 5000 },
    );
  }
  await pages[0].screenshot({ path: path.join(ARTIFACTS, 'demo-presence.png') });
  for (const context of contexts) await context.close();
});

test('after a restart the page shows every missed message once, in order', async () => {
  const page = await browser.newPage();
  await page.goto(app.origin + '/');
  await page.waitForSelector('#status[data-state="live"]');
  await publish(app.origin, 'before the restart');
  await waitForText(page, 'before the restart');

  await app.stop();
  await page.waitForFunction(() => window.demo.states.includes('reconnecting'), null, { timeout: 10000 });

  // While the page's server is down, a second instance on the same database
  // takes three messages (stored and sent by the app's own route).
  const second = await startApp(await freePort(), dataDir);
  const missed = ['missed one', 'missed two', 'missed three'];
  for (const text of missed) await post(second.origin, text);
  await second.stop();

  app = await startApp(port, dataDir);
  await waitForText(page, 'missed three', 15000);
  await page.waitForSelector('#status[data-state="live"]');
  const shown = await texts(page);
  const tail = shown.slice(shown.indexOf('before the restart'));
  assert.deepEqual(tail, ['before the restart', ...missed], 'each missed message once, in order');
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo-after-restart.png') });
  await page.close();
});

test('the page works on the polyfill when EventSource is missing', async () => {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    delete window.EventSource;
  });
  const page = await context.newPage();
  await page.goto(app.origin + '/');
  await page.waitForSelector('#status[data-state="live"]');
  assert.equal(await page.evaluate(() => window.EventSource === window.EventSourcePolyfill), true);

  await publish(app.origin, 'delivered through the polyfill');
  await waitForText(page, 'delivered through the polyfill', 1000);

  // Signed in, the polyfill's requests carry the sign-in cookie too.
  await page.fill('#sign-in input[name="name"]', 'cy');
  await page.click('#sign-in button');
  await page.click('button[data-room="_staff"]');
  await page.waitForSelector('#status[data-state="live"]');
  await page.fill('#send input[name="text"]', 'staff via polyfill');
  await page.click('#send button');
  await waitForText(page, 'staff via polyfill', 1000);
  assert.equal(await state(page), 'live');
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo.png') });
  await context.close();
});
