// The admin page in real Chromium: access control, the user list, creating
// a user (with the API's validation messages shown next to the fields),
// that user's first sign-in with a temporary password, role editing,
// disabling and deleting.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, newPage, signIn, submitLogin, screenshot, unexpectedProblems } from './support.js';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const stamp = Date.now().toString(36);
const newUser = { username: `carol-${stamp}`, email: `carol-${stamp}@example.com`, password: 'Temporary-pass-2024', chosen: 'Chosen-by-carol-2024' };

function row(page, username) {
  return page.locator(`#user-rows tr[data-username="${username}"]`);
}

test('a plain user gets a readable 403 page for /admin', async () => {
  const page = await newPage(browser);
  await signIn(page, 'bob', 'bob');
  assert.equal(await page.locator('.topnav a[href="/admin"]').count(), 0, 'no admin link');
  const response = await page.goto(`${BASE}/admin`);
  assert.equal(response.status(), 403);
  assert.equal(await page.textContent('h1'), 'Administrators only');
  assert.match(await page.textContent('main'), /does not have it/);
  await screenshot(page, 'admin-forbidden');
  await page.context().close();
});

test('an admin creates a user who then signs in with the temporary password', async () => {
  const admin = await newPage(browser);
  await signIn(admin, 'alice', 'alice', '/admin');
  await admin.waitForSelector('#user-rows tr[data-username="alice"]');
  assert.ok(await row(admin, 'bob').count() === 1, 'bob is listed');

  // Search narrows the list.
  await admin.fill('#search', 'bob');
  await admin.press('#search', 'Enter');
  await admin.waitForFunction(() => !document.querySelector('#user-rows tr[data-username="alice"]'));
  assert.equal(await row(admin, 'bob').count(), 1);
  await admin.fill('#search', '');
  await admin.press('#search', 'Enter');
  await admin.waitForSelector('#user-rows tr[data-username="alice"]');

  // Invalid input: the API's messages appear next to the fields.
  await admin.fill('#new-username', 'x');
  await admin.fill('#new-email', 'not-an-email');
  await admin.fill('#new-password', 'short');
  await admin.click('#create-user');
  await admin.waitForSelector('[data-error-for="username"]:not(:empty)');
  assert.match(await admin.textContent('[data-error-for="username"]'), /at least 3 characters/);
  assert.match(await admin.textContent('[data-error-for="email"]'), /name@example.com/);
  assert.match(await admin.textContent('[data-error-for="password"]'), /at least 12 characters/);
  assert.equal(await admin.getAttribute('#new-username', 'aria-invalid'), 'true');
  await screenshot(admin, 'admin-validation');

  await admin.fill('#new-username', newUser.username);
  await admin.fill('#new-email', newUser.email);
  await admin.fill('#new-first', 'Carol');
  await admin.fill('#new-last', 'Tester');
  await admin.fill('#new-password', newUser.password);
  await admin.click('#create-user');
  await admin.waitForSelector(`#user-rows tr[data-username="${newUser.username}"]`);
  assert.match(await admin.textContent('#admin-status'), new RegExp(`User ${newUser.username} was created`));
  assert.equal(await admin.textContent('[data-error-for="username"]'), '');
  await admin.waitForFunction((name) => [...document.querySelectorAll('#audit-rows tr')]
    .some((tr) => tr.textContent.includes('user.create') && tr.textContent.includes(name)), newUser.username);
  await screenshot(admin, 'admin');

  // The new user signs in and must choose a new password first.
  const carol = await newPage(browser);
  await carol.goto(`${BASE}/`);
  await submitLogin(carol, newUser.username, newUser.password);
  await carol.waitForSelector('#kc-passwd-update-form');
  await carol.fill('#password-new', newUser.chosen);
  await carol.fill('#password-confirm', newUser.chosen);
  await Promise.all([carol.waitForURL(`${BASE}/`), carol.click('#kc-passwd-update-form input[type="submit"]')]);
  await carol.waitForSelector('body[data-ready="true"]');
  assert.equal(await carol.textContent('#who'), 'Carol Tester');
  await carol.fill('#message-input', 'who am i');
  await carol.press('#message-input', 'Enter');
  await carol.waitForSelector('.message.bot[data-id]');
  assert.match(await carol.locator('.message.bot .text').last().textContent(), new RegExp(`signed in as ${newUser.username}`));
  assert.deepEqual(unexpectedProblems(carol), []);
  await carol.context().close();

  // Roles: make carol an agent.
  const carolRow = row(admin, newUser.username);
  await carolRow.locator('input[data-role="agent"]').check();
  await carolRow.locator('button.save-roles').click();
  await admin.waitForFunction(() => /Roles of .* saved/.test(document.getElementById('admin-status').textContent));
  await admin.waitForSelector(`#user-rows tr[data-username="${newUser.username}"] input[data-role="agent"]:checked`);

  // Disable, then delete with confirmation.
  await row(admin, newUser.username).locator('button.toggle-enabled').click();
  await admin.waitForFunction((name) => document.querySelector(`#user-rows tr[data-username="${name}"] .badge.off`), newUser.username);
  await row(admin, newUser.username).locator('button.delete-user').click();
  assert.match(await admin.textContent('#confirm-delete-text'), new RegExp(newUser.username));
  await admin.click('#confirm-delete button[value="cancel"]');
  assert.equal(await row(admin, newUser.username).count(), 1, 'cancel keeps the user');
  await row(admin, newUser.username).locator('button.delete-user').click();
  await admin.click('#confirm-delete-yes');
  await admin.waitForFunction((name) => !document.querySelector(`#user-rows tr[data-username="${name}"]`), newUser.username);
  assert.match(await admin.textContent('#admin-status'), /was deleted/);
  assert.deepEqual(unexpectedProblems(admin, [422]), []);
  await admin.context().close();
});
