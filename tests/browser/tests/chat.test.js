// The chat page in real Chromium: sign-in, sending, streaming replies,
// speech playback with word highlighting, history, several conversations,
// XSS safety, keyboard use, small screens and sign-out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, launch, newPage, signIn, screenshot, submitLogin, unexpectedProblems, waitForSpeech } from './support.js';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const lastBot = '.message.bot:last-child';

async function send(page, text) {
  const count = await page.locator('.message.bot').count();
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
  await page.waitForFunction(
    (n) => document.querySelectorAll('.message.bot[data-id]').length > n, count);
  return page.locator('.message.bot[data-id]').last();
}

async function clearHistory(page) {
  await page.click('#clear-history');
  await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/chat/history') && r.request().method() === 'DELETE'),
    page.click('#confirm-clear-yes'),
  ]);
  await page.waitForSelector('#empty:not([hidden])');
  assert.equal(await page.locator('.message').count(), 0);
}

test('a user signs in through the Keycloak form, chats, and hears the reply with words highlighted', async () => {
  const page = await newPage(browser);
  await page.goto(`${BASE}/`);
  assert.match(page.url(), /\/realms\/voxgate\/protocol\/openid-connect\/auth/, 'anonymous visitors are sent to sign in');
  await signIn(page, 'bob', 'bob');
  assert.equal(await page.textContent('#who'), 'Bob User');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'message-input', 'the message box has focus');
  await clearHistory(page);

  const reply = await send(page, 'what can you do');
  const user = page.locator('.message.user').last();
  assert.equal(await user.locator('.text').textContent(), 'what can you do');
  assert.match(await reply.locator('.text').textContent(), /I can explain what voxgate is/);
  assert.match(await reply.locator('time').textContent(), /\d{1,2}:\d{2}/);
  assert.match(await page.textContent('#announcer'), /voxgate says: I can explain/, 'the reply is announced');

  // Autoplay is on by default: the reply starts speaking by itself.
  const audio = await waitForSpeech(page);
  assert.ok(audio.duration > 1, `decoded duration ${audio.duration}`);
  assert.match(audio.src, /\/api\/tts\//);
  assert.equal(await reply.getAttribute('data-audio'), 'playing');

  // The highlighted word moves forward while it speaks.
  const seen = [];
  for (let i = 0; i < 20; i += 1) {
    const index = await reply.evaluate((el) => {
      const words = [...el.querySelectorAll('.word')];
      return words.findIndex((w) => w.classList.contains('speaking'));
    });
    if (index >= 0 && seen[seen.length - 1] !== index) seen.push(index);
    await page.waitForTimeout(150);
  }
  assert.ok(seen.length >= 3, `highlight moved through ${JSON.stringify(seen)}`);
  assert.ok(seen.every((v, i) => i === 0 || v > seen[i - 1]), `highlight only advances: ${JSON.stringify(seen)}`);
  assert.equal(await reply.getAttribute('data-timing'), 'marks', 'timed by the speech marks, not the estimate');
  await screenshot(page, 'chat-speaking');

  await reply.locator('button.stop').click();
  const stopped = await page.evaluate(() => ({
    paused: document.getElementById('player').paused,
    highlighted: document.querySelectorAll('.word.speaking').length,
  }));
  assert.deepEqual(stopped, { paused: true, highlighted: 0 });
  assert.equal(await reply.getAttribute('data-audio'), 'stopped');

  // Replay starts again from the beginning.
  await reply.locator('button.replay').click();
  await page.waitForFunction(() => document.getElementById('player').currentTime > 0.2);
  await reply.locator('button.stop').click();

  // History survives a reload.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  const texts = await page.locator('.message .text').allTextContents();
  assert.equal(texts.length, 2);
  assert.equal(texts[0], 'what can you do');
  assert.match(texts[1], /I can explain what voxgate is/);
  await screenshot(page, 'chat');
  assert.deepEqual(unexpectedProblems(page), []);
  await page.context().close();
});

test('a user keeps several conversations: starts, switches, renames, searches and deletes them', async () => {
  const page = await newPage(browser);
  await signIn(page, 'bob', 'bob');
  await clearHistory(page);
  const rows = page.locator('#conversation-list li');
  assert.equal(await rows.count(), 0);
  await send(page, 'what can you do');
  await page.waitForFunction(() => document.querySelector('#conversation-list li .title')?.textContent === 'what can you do');

  await page.click('#new-conversation');
  await page.waitForFunction(() => document.querySelectorAll('#conversation-list li').length === 2);
  await page.waitForSelector('#empty:not([hidden])');
  assert.equal(await page.locator('.message').count(), 0, 'the new conversation is empty');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'message-input', 'ready to type');
  assert.equal(await rows.first().locator('.title').textContent(), 'New conversation');
  await send(page, 'how do I change the voice');
  await page.waitForFunction(() => document.querySelector('#conversation-list li .title').textContent === 'how do I change the voice');
  assert.equal(await rows.first().getAttribute('aria-current'), 'true');

  // Back to the first: its own messages only.
  await rows.filter({ hasText: 'what can you do' }).locator('.open').click();
  await page.waitForFunction(() => document.querySelector('.message.user .text')?.textContent === 'what can you do');
  assert.equal(await page.locator('.message').count(), 2);
  const names = await page.locator('#conversation-list button').evaluateAll(
    (bs) => bs.map((b) => b.getAttribute('aria-label') || b.textContent.trim()));
  assert.equal(new Set(names).size, names.length, `every control has its own name: ${names.join(' | ')}`);

  // Renamed through a dialog.
  await rows.filter({ hasText: 'what can you do' }).locator('.rename').click();
  await page.fill('#rename-input', 'Capabilities');
  await page.click('#rename-save');
  await page.waitForFunction(() => [...document.querySelectorAll('#conversation-list .title')].some((t) => t.textContent === 'Capabilities'));

  // Searching finds a message in the other conversation and opens it.
  await page.fill('#conversation-search', 'change the voice');
  await page.waitForSelector('#search-results li');
  assert.match(await page.textContent('#search-status'), /\d+ messages? found/);
  const hit = page.locator('#search-results button', { hasText: 'how do I change the voice' });
  assert.match(await hit.textContent(), /how do I change the voice/);
  await hit.first().click();
  await page.waitForFunction(() => document.querySelector('.message.user .text')?.textContent === 'how do I change the voice');
  await screenshot(page, 'chat-conversations');

  // Deleting asks first; cancelling keeps it.
  const capabilities = rows.filter({ hasText: 'Capabilities' });
  await capabilities.locator('.delete').click();
  assert.match(await page.textContent('#confirm-delete-name'), /Capabilities/);
  await page.click('#confirm-delete button[value="cancel"]');
  assert.equal(await rows.count(), 2);
  await capabilities.locator('.delete').click();
  await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes('/api/chat/conversations/')),
    page.click('#confirm-delete-yes'),
  ]);
  await page.waitForFunction(() => document.querySelectorAll('#conversation-list li').length === 1);

  // A reload opens the most recent conversation.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.locator('.message.user .text').first().textContent(), 'how do I change the voice');
  assert.deepEqual(unexpectedProblems(page), []);
  await page.context().close();
});

test('keyboard shortcuts: ? lists them, / goes to the box, Ctrl+Shift+O starts a conversation, Esc stops speech', async () => {
  const page = await newPage(browser);
  await signIn(page, 'bob', 'bob');
  // `?` typed in the message box is just text.
  await page.focus('#message-input');
  await page.keyboard.type('?');
  assert.equal(await page.inputValue('#message-input'), '?');
  assert.equal(await page.locator('#shortcuts[open]').count(), 0);
  await page.fill('#message-input', '');
  // Elsewhere it opens the list.
  await page.locator('#who').click();
  await page.keyboard.press('?');
  await page.waitForSelector('#shortcuts[open]');
  assert.match(await page.textContent('#shortcuts'), /Start a new conversation/);
  await screenshot(page, 'chat-shortcuts');
  await page.keyboard.press('Escape');
  await page.waitForSelector('#shortcuts:not([open])', { state: 'attached' });
  await page.locator('#who').click();
  await page.keyboard.press('/');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'message-input');
  const before = await page.locator('#conversation-list li').count();
  await page.keyboard.press('Control+Shift+O');
  await page.waitForFunction((n) => document.querySelectorAll('#conversation-list li').length === n + 1, before);
  await page.waitForSelector('#empty:not([hidden])');
  // Esc stops the reply being spoken.
  await send(page, 'what can you do');
  await waitForSpeech(page);
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => document.getElementById('player').paused);
  assert.equal(await page.locator('.word.speaking').count(), 0);
  assert.deepEqual(unexpectedProblems(page), []);
  await page.context().close();
});

test('a draft survives the session ending and signing in again; the speech quota left is shown', async () => {
  const page = await newPage(browser);
  await signIn(page, 'bob', 'bob');
  await page.waitForFunction(() => /Speech left today: [\d,.]+ of [\d,.]+ characters/.test(document.getElementById('speech-quota').textContent));
  const before = await page.textContent('#speech-quota');
  await page.fill('#message-input', 'A long thought that must not be lost');
  // The session ends (its cookie is gone); the next load asks to sign in.
  await page.context().clearCookies();
  await page.reload();
  await submitLogin(page, 'bob', 'bob');
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.inputValue('#message-input'), 'A long thought that must not be lost');
  // Sent, it is no longer kept; the quota shown goes down.
  await send(page, await page.inputValue('#message-input'));
  await page.waitForFunction((b) => document.getElementById('speech-quota').textContent !== b, before);
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.inputValue('#message-input'), '');
  await page.context().close();
});

test('markup in a message is shown as text and never runs', async () => {
  const page = await newPage(browser);
  await signIn(page, 'bob', 'bob');
  const payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold</b>';
  await send(page, payload);
  assert.equal(await page.locator('.message.user').last().locator('.text').textContent(), payload);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('.messages img, .messages script, .messages b').count(), 0);
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('.messages img, .messages script, .messages b').count(), 0);
  assert.ok((await page.locator('.message.user .text').allTextContents()).includes(payload));
  await page.context().close();
});

test('the chat works with the keyboard alone', async () => {
  const page = await newPage(browser);
  await signIn(page, 'bob', 'bob');
  await clearHistory(page);
  // Shift+Enter adds a line; Enter sends.
  await page.focus('#message-input');
  await page.keyboard.type('hello');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('there');
  assert.equal(await page.inputValue('#message-input'), 'hello\nthere');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.message.bot[data-id]');
  assert.equal(await page.locator('.message.user .text').first().textContent(), 'hello\nthere');
  assert.equal(await page.inputValue('#message-input'), '');

  // Tab reaches the reply's Play button; a follow-up chip sends a question.
  const reached = [];
  for (let i = 0; i < 40; i += 1) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement.className + '|' + document.activeElement.textContent);
    reached.push(focused);
    if (focused.startsWith('chip')) break;
  }
  assert.ok(reached.some((f) => f.includes('play')), `Play is reachable: ${reached.join(', ')}`);
  assert.ok(reached[reached.length - 1].startsWith('chip'), 'a follow-up is reachable');
  const bots = await page.locator('.message.bot[data-id]').count();
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('.message.bot[data-id]').length > n, bots);
  // Each reply's controls are named after it, never "Play" twice.
  const controlNames = await page.locator('.message .controls button').evaluateAll(
    (bs) => bs.map((b) => b.getAttribute('aria-label')));
  assert.ok(controlNames.length >= 6, `${controlNames.length} controls`);
  assert.equal(new Set(controlNames).size, controlNames.length, controlNames.join(' | '));
  assert.ok(controlNames.every((n) => /^(Play|Pause|Stop|Replay|Copy|Regenerate) the reply from /.test(n)), controlNames.join(' | '));

  // An empty message is refused without a request.
  await page.focus('#message-input');
  await page.keyboard.press('Enter');
  assert.equal(await page.textContent('#composer-error'), 'Type a message first.');
  await page.context().close();
});

test('settings are saved and the chat fits a phone screen', async () => {
  const page = await newPage(browser, { width: 375, height: 740 });
  await signIn(page, 'bob', 'bob');
  const voices = await page.locator('#voice-select option').count();
  assert.ok(voices > 1, 'voices are offered');
  // scripts/browser-test runs the neural voice, as scripts/dev does.
  assert.ok(await page.locator('#voice-select option', { hasText: 'Joe (neural)' }).count() === 1,
    'the neural voice is offered');
  const second = await page.locator('#voice-select option').nth(1).getAttribute('value');
  await page.selectOption('#voice-select', second);
  await page.selectOption('#rate-select', '1.5');
  await page.uncheck('#autoplay');
  await page.waitForSelector('body[data-settings-saved="3"]');
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.inputValue('#voice-select'), second);
  assert.equal(await page.inputValue('#rate-select'), '1.5');
  assert.equal(await page.isChecked('#autoplay'), false);

  // With autoplay off a new reply stays silent until Play is pressed.
  const reply = await send(page, 'how do I change the voice');
  await page.waitForTimeout(500);
  assert.equal(await page.evaluate(() => document.getElementById('player').paused), true);
  await reply.locator('button.play').click();
  await page.waitForFunction(() => document.getElementById('player').currentTime > 0.2, null, { timeout: 20000 });
  assert.equal(await page.evaluate(() => document.getElementById('player').playbackRate), 1.5);
  assert.ok((await reply.locator('.text').textContent()).length > 0);
  await reply.locator('button.stop').click();

  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling (${overflow}px too wide)`);
  await screenshot(page, 'chat-phone');

  // Put the defaults back for the other tests.
  await page.selectOption('#voice-select', '');
  await page.selectOption('#rate-select', '1');
  await page.check('#autoplay');
  await page.waitForSelector('body[data-settings-saved="3"]');
  await page.context().close();
});

test('signing out ends the session', async () => {
  const page = await newPage(browser);
  await signIn(page, 'bob', 'bob');
  await Promise.all([page.waitForURL(/signed-out/), page.click('#sign-out')]);
  assert.match(await page.textContent('h1'), /signed out/i);
  const me = await page.evaluate(async (base) => (await fetch(`${base}/api/me`)).status, BASE);
  assert.equal(me, 401);
  await page.goto(`${BASE}/`);
  assert.match(page.url(), /openid-connect\/auth/, 'the chat asks to sign in again');
  await page.waitForSelector('#kc-form-login');
  await page.context().close();
});
