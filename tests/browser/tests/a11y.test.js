// Accessibility: axe-core's WCAG 2.1 A/AA rules and best practices on every
// page a person uses, in the states they see: the chat with a reply and
// its conversations (and its dialogs open), on a desktop and a phone, light
// and dark; the admin page; the pages for a refusal and for signing out.
// No serious or critical violation may remain. And the theme toggle.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, accessibilityViolations, launch, newPage, screenshot, signIn } from './support.js';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function chatWithAReply(page) {
  await signIn(page, 'bob', 'bob');
  if (await page.locator('.message.bot[data-id]').count() === 0) {
    await page.fill('#message-input', 'what can you do');
    await page.press('#message-input', 'Enter');
    await page.waitForSelector('.message.bot[data-id]');
  }
  await page.waitForSelector('#conversation-list li', { state: 'attached' });
}

const desktop = { width: 1280, height: 860 };
const phone = { width: 375, height: 740 };
for (const [name, viewport, colorScheme] of [
  ['desktop, light', desktop, 'light'], ['desktop, dark', desktop, 'dark'],
  ['phone, light', phone, 'light'], ['phone, dark', phone, 'dark'],
]) {
  test(`the chat page has no serious accessibility violation (${name})`, async () => {
    const page = await newPage(browser, viewport, { colorScheme });
    await chatWithAReply(page);
    if (viewport === phone) await page.click('#conversations-panel > summary');
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, `chat-${name.replace(', ', '-')}`);
    // With the dialogs open.
    await page.locator('#conversation-list .rename').first().click();
    assert.deepEqual(await accessibilityViolations(page), [], 'rename dialog');
    await page.keyboard.press('Escape');
    await page.locator('#conversation-list .delete').first().click();
    assert.deepEqual(await accessibilityViolations(page), [], 'delete dialog');
    await page.keyboard.press('Escape');
    await page.context().close();
  });
}

for (const colorScheme of ['light', 'dark']) {
  test(`the admin page has no serious accessibility violation (${colorScheme})`, async () => {
    const page = await newPage(browser, desktop, { colorScheme });
    await signIn(page, 'alice', 'alice', '/admin');
    await page.waitForSelector('#user-rows tr');
    assert.deepEqual(await accessibilityViolations(page), []);
    await screenshot(page, `admin-${colorScheme}`);
    await page.context().close();
  });
}

test('the theme follows the system until chosen, and the choice is kept', async () => {
  const page = await newPage(browser, desktop, { colorScheme: 'dark' });
  await signIn(page, 'bob', 'bob');
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(await background(), 'rgb(17, 20, 26)', 'dark, as the system asks');
  assert.equal(await page.textContent('#theme-toggle'), 'Theme: system');
  await page.click('#theme-toggle');
  assert.equal(await page.textContent('#theme-toggle'), 'Theme: light');
  assert.equal(await background(), 'rgb(246, 247, 249)');
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await background(), 'rgb(246, 247, 249)', 'kept across pages');
  await page.click('#theme-toggle');
  assert.equal(await page.textContent('#theme-toggle'), 'Theme: dark');
  await page.click('#theme-toggle');
  assert.equal(await page.textContent('#theme-toggle'), 'Theme: system');
  assert.equal(await background(), 'rgb(17, 20, 26)');
  await page.context().close();
});

test('the refusal and signed-out pages have no serious accessibility violation', async () => {
  const page = await newPage(browser);
  await signIn(page, 'bob', 'bob');
  await page.goto(`${BASE}/admin`);
  assert.deepEqual(await accessibilityViolations(page), [], 'the 403 page');
  await page.goto(`${BASE}/`);
  await page.waitForSelector('body[data-ready="true"]');
  await Promise.all([page.waitForURL(/signed-out/), page.click('#sign-out')]);
  assert.deepEqual(await accessibilityViolations(page), [], 'the signed-out page');
  await page.context().close();
});
