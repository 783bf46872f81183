// The generated demo app deployed elsewhere: its release layout (the
// binary, Rocket.toml, static/ and templates/) copied to another
// directory, and the source directory moved out of reach. The page and its
// scripts are served, and the app does not panic.
//
//   DEMO_APP_DIR=/tmp/x/demo-app DEMO_APP_BIN=target/debug/demo-app node --test e2e/

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, renameSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { freePort, makeTempDir, removeDir, waitUntil } from '../test/helpers.mjs';

const APP_DIR = process.env.DEMO_APP_DIR;
const APP_BIN = process.env.DEMO_APP_BIN;

test('deployed elsewhere, the demo app serves its page and scripts', { skip: !APP_DIR || !APP_BIN }, async () => {
  const deployed = makeTempDir('deployed-app');
  const binary = path.join(deployed, 'app');
  copyFileSync(APP_BIN, binary);
  for (const entry of ['Rocket.toml', 'static', 'templates']) {
    cpSync(path.join(APP_DIR, entry), path.join(deployed, entry), { recursive: true });
  }
  // The source directory, out of reach while the app runs.
  const away = `${APP_DIR}.away`;
  renameSync(APP_DIR, away);
  const port = await freePort();
  const child = spawn(binary, [], {
    cwd: deployed,
    env: {
      ...process.env,
      ROCKET_PORT: String(port),
      ROCKET_ADDRESS: '127.0.0.1',
      ROCKET_LOG_LEVEL: 'critical',
      ROCKET_SHUTDOWN: '{grace=1,mercy=1}',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const origin = `http://127.0.0.1:${port}`;
  try {
    await waitUntil(
      async () => {
        if (child.exitCode !== null) throw new Error(`the app exited: ${stderr}`);
        try {
          return (await fetch(`${origin}/`)).ok;
        } catch {
          return false;
        }
      },
      { timeout: 30000, what: 'the deployed app' },
    );
    const page = await (await fetch(`${origin}/`)).text();
    for (const script of ['app.js', 'reconnecting-eventsource.js']) {
      assert.match(page, new RegExp(`/static/${script.replace('.', '\\.')}`), `the page loads ${script}`);
      const response = await fetch(`${origin}/static/${script}`);
      assert.equal(response.status, 200, `/static/${script}`);
      assert.ok((await response.text()).length > 100, `${script} has its content`);
    }
    assert.doesNotMatch(stderr, /panicked/, 'no panic');
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
    renameSync(away, APP_DIR);
    removeDir(deployed);
  }
});
