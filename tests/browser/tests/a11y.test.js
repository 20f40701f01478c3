// Accessibility: axe-core's WCAG 2.1 A/AA rules and best practices on every
// page a person uses, in the states they see: the chat with a reply and
// its conversations (and its dialogs open), on a desktop and a phone; the
// admin page; the pages for a refusal and for signing out. No serious or
// critical violation may remain.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, accessibilityViolations, launch, newPage, signIn } from './support.js';

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

for (const [name, viewport] of [['desktop', { width: 1280, height: 860 }], ['phone', { width: 375, height: 740 }]]) {
  test(`the chat page has no serious accessibility violation (${name})`, async () => {
    const page = await newPage(browser, viewport);
    await chatWithAReply(page);
    if (name === 'phone') await page.click('#conversations-panel > summary');
    assert.deepEqual(await accessibilityViolations(page), []);
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

test('the admin page has no serious accessibility violation', async () => {
  const page = await newPage(browser);
  await signIn(page, 'alice', 'alice', '/admin');
  await page.waitForSelector('#user-rows tr');
  assert.deepEqual(await accessibilityViolations(page), []);
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
