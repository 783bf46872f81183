// Shared helpers of the browser tests: the Rust example server, a static
// server for the page and the scripts, Chromium through playwright-core,
// JWTs, and waiting with deadlines.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..');
export const STATIC_DIR = path.join(REPO, 'static');
export const FIXTURES = path.join(here, 'fixtures');
export const ARTIFACTS = path.join(REPO, 'target', 'js-artifacts');

export const PUBLISH_KEY = 'test-publish-key-0123456789';
export const JWT_SECRET = 'test-jwt-secret-0123456789abcdef';
export const KEEPALIVE_SECS = 2;

export const SERVER_BIN =
  process.env.EVENTSTREAM_SERVER_BIN || path.join(REPO, 'target', 'debug', 'examples', 'server');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` (sync or async) until it returns a truthy value. */
export async function waitUntil(check, { timeout = 10000, interval = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(interval);
  }
}

/** A port that was free a moment ago. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function makeTempDir(prefix = 'eventstream-js-') {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/**
 * Starts the example server on `port` with its SQLite file in `dir`, and
 * resolves once it accepts TCP connections.
 */
export async function startServer({ port, dir, keepaliveSecs = KEEPALIVE_SECS } = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(
      `the example server binary is missing at ${SERVER_BIN}: run \`cargo build --examples\` ` +
        'in the repository root first (or set EVENTSTREAM_SERVER_BIN)'
    );
  }
  port = port || (await freePort());
  dir = dir || makeTempDir();
  const env = {
    ...process.env,
    ROCKET_PORT: String(port),
    ROCKET_ADDRESS: '127.0.0.1',
    ROCKET_LOG_LEVEL: 'critical',
    ROCKET_CLI_COLORS: 'false',
    ROCKET_DATABASES: `{eventstream={url="sqlite://${dir}/events.db"}}`,
    ROCKET_EVENTSTREAM:
      `{publish_key="${PUBLISH_KEY}",jwt_secret="${JWT_SECRET}",` +
      `keepalive_secs=${keepaliveSecs},allow_origins="*"}`,
  };
  const child = spawn(SERVER_BIN, [], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let exitInfo = null;
  exited.then((info) => (exitInfo = info));
  const deadline = Date.now() + 30000;
  for (;;) {
    if (exitInfo) {
      throw new Error(
        `the example server exited before listening (${JSON.stringify(exitInfo)}):\n${output}`
      );
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the example server did not listen on port ${port} within 30 s:\n${output}`);
    }
    await sleep(25);
  }
  const server = {
    port,
    dir,
    child,
    origin: `http://127.0.0.1:${port}`,
    output: () => output,
    exited,
    /** Ends the process (SIGTERM, SIGKILL after 10 s) and waits for it. */
    async stop(signal = 'SIGTERM') {
      if (exitInfo) return exitInfo;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      const info = await exited;
      clearTimeout(timer);
      return info;
    },
  };
  return server;
}

/**
 * POSTs an event through the publish API; returns the id it answered
 * (null for a live-only channel, which answers 202).
 */
export async function publish(origin, channel, data, type) {
  const body = type === undefined ? { data } : { type, data };
  const response = await fetch(`${origin}/events/${encodeURIComponent(channel)}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${PUBLISH_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status !== 201 && response.status !== 202) {
    throw new Error(`publish to ${channel} answered ${response.status}: ${text}`);
  }
  return JSON.parse(text).id;
}

/** An HS256 JWT with `sub` and `exp`, signed with the test secret. */
export function makeJwt(sub, { secret = JWT_SECRET, ttlSecs = 3600 } = {}) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const header = encode({ alg: 'HS256', typ: 'JWT' });
  const payload = encode({ sub, exp: Math.floor(Date.now() / 1000) + ttlSecs });
  const signature = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

const CONTENT_TYPES = { '.js': 'text/javascript; charset=utf-8', '.html': 'text/html; charset=utf-8' };

/**
 * Serves the test page and the shipped scripts:
 *   /page.html                    the harness page (fixtures/page.html)
 *   /harness.js                   its script (fixtures/harness.js)
 *   /static/<file>.js             the shipped files of static/ (the top level)
 * `extra(req, res)` may answer other paths (return true when it did).
 */
export async function startStaticServer(extra) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (extra && extra(req, res, url)) return;
    let file = null;
    if (url.pathname === '/page.html') file = path.join(FIXTURES, 'page.html');
    else if (url.pathname === '/harness.js') file = path.join(FIXTURES, 'harness.js');
    else if (/^\/static\/[A-Za-z0-9._-]+\.js$/.test(url.pathname)) {
      file = path.join(STATIC_DIR, url.pathname.slice('/static/'.length));
    }
    if (!file || !existsSync(file)) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    let body = readFileSync(file);
    if (url.pathname === '/page.html') {
      const scripts = [];
      if (url.searchParams.get('polyfill') === '1') scripts.push('/static/eventsource.min.js');
      scripts.push('/static/reconnecting-eventsource.js', '/harness.js');
      const tags = scripts.map((src) => `<script src="${src}"></script>`).join('\n');
      body = body.toString('utf8').replace('<!--SCRIPTS-->', tags);
    }
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[path.extname(file)] || 'application/octet-stream',
      'Cache-Control': 'no-store',
    });
    res.end(body);
  });
  return { server, ...(await listen(server)) };
}

/**
 * Listens on a free loopback port; `close()` also ends open connections
 * (streams would otherwise keep `server.close` waiting forever).
 */
export async function listen(server) {
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Runs what a test started, in reverse order, after it ends (even when it
 * fails). Returns the function that registers a clean-up task.
 */
export function cleanupAfter(t) {
  const tasks = [];
  t.after(async () => {
    for (const task of tasks.reverse()) {
      try {
        await task();
      } catch {
        // keep cleaning up
      }
    }
  });
  return (task) => tasks.push(task);
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * Opens the harness page. `polyfill`: also load eventsource.min.js;
 * `deleteNative`: remove window.EventSource before any script runs.
 * Collects page errors and the URLs of requests to `/events`.
 */
export async function openPage(browser, staticOrigin, { polyfill = false, deleteNative = false } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  if (deleteNative) {
    await page.addInitScript(() => {
      delete window.EventSource;
    });
  }
  const pageErrors = [];
  const consoleErrors = [];
  const requests = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith('/events') && request.method() === 'GET') {
      requests.push({ url: request.url(), headers: request.headers() });
    }
  });
  await page.goto(`${staticOrigin}/page.html${polyfill ? '?polyfill=1' : ''}`);
  await page.waitForFunction(() => window.harnessReady === true);
  return { context, page, pageErrors, consoleErrors, requests };
}

export function screenshotPath(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

export function removeDir(dir) {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}
