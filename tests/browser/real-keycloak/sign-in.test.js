// The browser flows against the real Keycloak 26 login pages (run by
// `scripts/browser-test --real-keycloak`, which starts the real server):
// code + PKCE through voxgate's backend, the update-password page for a
// user an admin created with a temporary password, and sign-out through
// Keycloak's end-session endpoint back to voxgate's signed-out page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, newPage, signIn, submitLogin, screenshot, unexpectedProblems, createUser } from '../tests/support.js';

const KEYCLOAK = process.env.KEYCLOAK_URL;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser.close(); });

test('a user signs in on the real Keycloak page with code and PKCE, then signs out there', async () => {
  const page = await newPage(browser);
  const authorize = page.waitForRequest((r) => r.url().startsWith(`${KEYCLOAK}/realms/voxgate/protocol/openid-connect/auth`));
  await page.goto(`${BASE}/`);
  const url = new URL((await authorize).url());
  assert.equal(url.searchParams.get('response_type'), 'code');
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(url.searchParams.get('code_challenge'), 'a PKCE challenge is sent');
  await submitLogin(page, 'bob', 'bob');
  await page.waitForURL(`${BASE}/`);
  await page.waitForSelector('body[data-ready="true"]');
  const me = await page.evaluate(async (base) => (await fetch(`${base}/api/me`)).json(), BASE);
  assert.equal(me.username, 'bob');
  await screenshot(page, 'real-keycloak-chat');

  // Sign-out goes through Keycloak's end-session endpoint and comes back.
  const endSession = page.waitForRequest((r) => r.url().startsWith(`${KEYCLOAK}/realms/voxgate/protocol/openid-connect/logout`));
  await page.click('#sign-out');
  await endSession;
  await page.waitForURL(/signed-out/);
  assert.match(await page.textContent('h1'), /signed out/i);
  // Keycloak's session is gone too: the next visit asks for the password.
  await page.goto(`${BASE}/`);
  await page.waitForSelector('#kc-form-login');
  assert.deepEqual(unexpectedProblems(page), []);
  await page.context().close();
});

test('a user created by an admin with a temporary password must choose a new one on the real page', async () => {
  const username = `kc${Date.now().toString(36)}`;
  const admin = await newPage(browser);
  await signIn(admin, 'alice', 'alice', '/admin');
  await admin.waitForSelector('#user-rows tr[data-username="alice"]');
  await createUser(admin, { username, first: 'Kay', last: 'Real', password: 'a temporary password 1' });
  await admin.context().close();

  const user = await newPage(browser);
  await user.goto(`${BASE}/`);
  await submitLogin(user, username, 'a temporary password 1');
  await user.waitForSelector('#kc-passwd-update-form');
  await screenshot(user, 'real-keycloak-update-password');
  await user.fill('#password-new', 'my own chosen password 2');
  await user.fill('#password-confirm', 'my own chosen password 2');
  await Promise.all([
    user.waitForURL(`${BASE}/`),
    user.click('#kc-passwd-update-form [type="submit"]'),
  ]);
  await user.waitForSelector('body[data-ready="true"]');
  assert.equal(await user.textContent('#who'), 'Kay Real');
  assert.deepEqual(unexpectedProblems(user), []);
  await user.context().close();
});
