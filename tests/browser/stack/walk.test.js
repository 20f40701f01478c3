// The compose topology run as processes (scripts/stack walk), walked in
// Chromium over https through the shipped nginx with the local CA trusted:
// the real Keycloak in production mode, two voxgate instances (one of them
// killed half-way), the admin console at its documented address and the
// master realm refused at the edge. The tests run in order and share the
// browser: each step starts where the one before left off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, newPage, submitLogin, screenshot, unexpectedProblems, createUser, waitForSpeech } from '../tests/support.js';

const ADMIN_CONSOLE = process.env.KEYCLOAK_ADMIN_URL;
const INSTANCES = process.env.VOXGATE_INSTANCES.split(' ').map((entry) => {
  const [addr, pid] = entry.split('=');
  return { addr, pid: Number(pid) };
});
assert.equal(INSTANCES.length, 2, 'two voxgate instances');

let browser;
let bob;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

// Requests an instance has answered with 2xx, read from its own /metrics
// (which nginx never serves).
async function answered(instance) {
  const text = await (await fetch(`http://${instance.addr}/metrics`)).text();
  return text.split('\n')
    .filter((l) => l.startsWith('voxgate_http_requests_total{') && /status="2\d\d"/.test(l))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

async function alive(instance) {
  try {
    await fetch(`http://${instance.addr}/healthz`);
    return true;
  } catch {
    return false;
  }
}

async function meStatuses(page, times) {
  return page.evaluate(async ([base, n]) => {
    const statuses = [];
    for (let i = 0; i < n; i += 1) statuses.push((await fetch(`${base}/api/me`)).status);
    return statuses;
  }, [BASE, times]);
}

async function chat(page, text) {
  const count = await page.locator('.message.bot[data-id]').count();
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
  await page.waitForFunction(
    (n) => document.querySelectorAll('.message.bot[data-id]').length > n, count, { timeout: 20000 });
  // The reply is spoken by itself (autoplay): the player gets past half a
  // second of decoded audio.
  const audio = await waitForSpeech(page, 30000);
  assert.ok(audio.duration > 1, `decoded duration ${audio.duration}`);
  assert.ok(audio.src.startsWith(`${BASE}/api/tts/`), audio.src);
  return page.locator('.message.bot[data-id]').last();
}

// The master realm's administrator, as the admin console's own client
// does it (the console's address: never through nginx).
async function masterToken() {
  const response = await fetch(`${ADMIN_CONSOLE}/realms/master/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: 'admin-cli',
      username: process.env.KEYCLOAK_ADMIN_USER,
      password: process.env.KEYCLOAK_ADMIN_PASSWORD,
    }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).access_token;
}

test('over https with the local CA trusted, a user signs in on the real Keycloak page, chats and hears the reply', async () => {
  bob = await newPage(browser);
  const authorize = bob.waitForRequest((r) => r.url().startsWith(`${BASE}/realms/voxgate/protocol/openid-connect/auth`));
  const first = await bob.goto(`${BASE}/`);
  assert.ok(first, 'the https page loaded: Chromium trusts the certificate');
  const url = new URL((await authorize).url());
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(url.searchParams.get('redirect_uri'), `${BASE}/auth/callback`, 'the public https origin');
  await submitLogin(bob, 'bob', 'bob');
  await bob.waitForURL(`${BASE}/`);
  await bob.waitForSelector('body[data-ready="true"]');
  assert.equal(await bob.textContent('#who'), 'Bob User');
  const reply = await chat(bob, 'what can you do');
  assert.match(await reply.locator('.text').textContent(), /I can explain what voxgate is/);
  await screenshot(bob, 'stack-chat');

  // nginx spreads the session's requests over both instances.
  const before = await Promise.all(INSTANCES.map(answered));
  assert.deepEqual(await meStatuses(bob, 12), Array(12).fill(200));
  const after = await Promise.all(INSTANCES.map(answered));
  INSTANCES.forEach((instance, i) => {
    assert.ok(after[i] > before[i], `instance ${instance.addr} served some of them: ${before} -> ${after}`);
  });
  assert.deepEqual(unexpectedProblems(bob), []);
});

test('one voxgate instance is killed mid-walk and the walk goes on on the other', async () => {
  const [killed, survivor] = INSTANCES;
  process.kill(killed.pid, 'SIGKILL');
  for (let i = 0; i < 50 && await alive(killed); i += 1) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await alive(killed), false, 'the killed instance no longer answers');

  const before = await answered(survivor);
  // The same session, no new sign-in: sessions live in Postgres.
  assert.deepEqual(await meStatuses(bob, 10), Array(10).fill(200));
  const reply = await chat(bob, 'hello');
  assert.ok((await reply.locator('.text').textContent()).length > 0);
  await bob.reload();
  await bob.waitForSelector('body[data-ready="true"]');
  assert.ok(await answered(survivor) >= before + 10, 'the survivor answered them');
  assert.deepEqual(unexpectedProblems(bob), []);
  await bob.context().close();
});

let created;
let createdPage;

test('an admin creates a user with a temporary password; the user signs in and must choose a new one', async () => {
  created = `walk${Date.now().toString(36)}`;
  const admin = await newPage(browser);
  await admin.goto(`${BASE}/admin`);
  await submitLogin(admin, 'alice', 'alice');
  await admin.waitForURL(`${BASE}/admin`);
  await admin.waitForSelector('#user-rows tr[data-username="alice"]');
  await createUser(admin, { username: created, first: 'Walk', last: 'Er', password: 'a temporary password 1' });
  await screenshot(admin, 'stack-admin');
  assert.deepEqual(unexpectedProblems(admin), []);
  await admin.context().close();

  createdPage = await newPage(browser);
  await createdPage.goto(`${BASE}/`);
  await submitLogin(createdPage, created, 'a temporary password 1');
  await createdPage.waitForSelector('#kc-passwd-update-form');
  assert.ok(createdPage.url().startsWith(`${BASE}/realms/voxgate/`), 'Keycloak\'s page, through nginx');
  await createdPage.fill('#password-new', 'my own chosen password 2');
  await createdPage.fill('#password-confirm', 'my own chosen password 2');
  await Promise.all([
    createdPage.waitForURL(`${BASE}/`),
    createdPage.click('#kc-passwd-update-form [type="submit"]'),
  ]);
  await createdPage.waitForSelector('body[data-ready="true"]');
  assert.equal(await createdPage.textContent('#who'), 'Walk Er');
});

test('a logout on Keycloak\'s side ends the voxgate session (back-channel through nginx\'s internal listener)', async () => {
  const token = await masterToken();
  const admin = (path, init = {}) => fetch(`${ADMIN_CONSOLE}/admin/realms/voxgate${path}`, {
    ...init, headers: { authorization: `Bearer ${token}` },
  });
  const [user] = await (await admin(`/users?exact=true&username=${created}`)).json();
  assert.equal(user.username, created);
  assert.deepEqual(await meStatuses(createdPage, 1), [200]);
  assert.equal((await admin(`/users/${user.id}/logout`, { method: 'POST' })).status, 204);
  let status = 200;
  for (let i = 0; i < 100 && status === 200; i += 1) {
    [status] = await meStatuses(createdPage, 1);
    if (status === 200) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 401, 'the voxgate session ended');
  // The next visit starts a new sign-in with the new password's form.
  await createdPage.goto(`${BASE}/`);
  await createdPage.waitForSelector('#kc-form-login');
  await createdPage.context().close();
});

test('the admin console signs in at its documented address', async () => {
  const page = await newPage(browser);
  const realmRead = page.waitForResponse((r) => /\/admin\/realms(\/|$|\?)/.test(r.url()) && r.status() === 200, { timeout: 60000 });
  await page.goto(`${ADMIN_CONSOLE}/admin/`);
  await page.waitForSelector('#kc-form-login');
  assert.ok(page.url().startsWith(`${ADMIN_CONSOLE}/realms/master/`), `signs in at the console's address: ${page.url()}`);
  await submitLogin(page, process.env.KEYCLOAK_ADMIN_USER, process.env.KEYCLOAK_ADMIN_PASSWORD);
  await page.waitForURL(`${ADMIN_CONSOLE}/admin/master/console/**`);
  await realmRead;
  // The signed-in console renders its navigation.
  await page.getByRole('link', { name: 'Clients' }).first().waitFor({ timeout: 60000 });
  await screenshot(page, 'stack-admin-console');
  await page.context().close();
});

test('the master realm is refused through nginx', async () => {
  const page = await newPage(browser);
  for (const path of [
    '/realms/master/account/',
    '/realms/master/protocol/openid-connect/auth?client_id=security-admin-console&response_type=code',
    '/realms/MASTER/.well-known/openid-configuration',
    '/realms/master;x/protocol/openid-connect/certs',
    '/admin/master/console/',
  ]) {
    const response = await page.goto(`${BASE}${path}`);
    assert.equal(response.status(), 403, path);
  }
  await page.context().close();
});
