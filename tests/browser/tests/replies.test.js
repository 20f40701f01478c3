// Replies written over time by a language model (tests/browser/model, at
// the second voxgate scripts/browser-test starts): Markdown shown safely
// and spoken without its markup, copying a reply or its code, downloading
// its audio, stopping a reply half-way, writing the last one again, and
// the days between messages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { accessibilityViolations, launch, newPage, screenshot, signIn, unexpectedProblems } from './support.js';

const BASE = process.env.VOXGATE_MODEL_URL;
const MODEL = process.env.MODEL_URL;
if (!BASE || !MODEL) throw new Error('VOXGATE_MODEL_URL and MODEL_URL are not set: run scripts/browser-test');

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const desktop = { width: 1280, height: 860 };
const phone = { width: 375, height: 740 };

// Signs in to the voxgate with the model and starts a new conversation.
async function start(page, username = 'bob') {
  await signIn(page, username, username, '/', BASE);
  await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/api/chat/conversations') && r.request().method() === 'POST'),
    page.click('#new-conversation'),
  ]);
  await page.waitForSelector('#empty:not([hidden])');
}

async function ask(page, text) {
  await page.fill('#message-input', text);
  await page.press('#message-input', 'Enter');
}

async function reply(page, text) {
  const count = await page.locator('.message.bot[data-id]').count();
  await ask(page, text);
  await page.waitForFunction((n) => document.querySelectorAll('.message.bot[data-id]').length > n, count);
  return page.locator('.message.bot[data-id]').last();
}

const hungUp = async () => (await (await fetch(`${MODEL}/stats`)).json()).hungUp;

test('a Markdown reply is shown as safe HTML, spoken as words, copied and downloaded', async () => {
  const page = await newPage(browser, desktop);
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  await start(page);
  const bot = await reply(page, 'show me some markdown');
  const text = bot.locator('.text');
  assert.equal(await text.locator('strong').first().textContent(), 'how');
  assert.equal(await text.locator('ol > li').count(), 2);
  assert.equal(await text.locator('li code').textContent(), 'cargo install voxgate');
  const link = text.locator('a');
  assert.equal(await link.getAttribute('href'), 'https://example.com/guide');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
  assert.equal(await text.locator('pre code').textContent(), 'voxgate serve\n');
  // Raw HTML in a reply is shown as text, never made an element.
  assert.equal(await text.locator('img').count(), 0);
  assert.match(await text.textContent(), /<img src=x onerror="window.pwned=1">/);
  assert.equal(await page.evaluate(() => window.pwned), undefined);

  // Spoken with the words highlighted, never in the code block.
  await page.waitForSelector('.message.bot .word.speaking', { timeout: 20000 });
  const spokenOutsideCode = await page.evaluate(() =>
    [...document.querySelectorAll('.word.speaking')].every((w) => !w.closest('pre')));
  assert.ok(spokenOutsideCode);
  assert.equal(await text.locator('pre .word').count(), 0, 'code is not wrapped as spoken words');
  await screenshot(page, 'replies-markdown-light');
  await page.keyboard.press('Escape');

  // Copy the code block, then the whole reply (as written: Markdown).
  await bot.locator('.copy-code').click();
  await page.waitForFunction(() => document.getElementById('announcer').textContent === 'Copied.');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'voxgate serve\n');
  await bot.locator('.controls .copy').click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.match(copied, /^Here is \*\*how\*\* to start:/);
  assert.match(copied, /```sh\nvoxgate serve\n```/);

  // Download the reply's audio.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    bot.locator('.controls a.download').click(),
  ]);
  const id = await bot.getAttribute('data-id');
  assert.equal(download.suggestedFilename(), `voxgate-reply-${id}.mp3`);
  const bytes = readFileSync(await download.path());
  assert.ok(bytes.length > 1000, `${bytes.length} bytes`);
  assert.ok(bytes.subarray(0, 3).toString() === 'ID3' || (bytes[0] === 0xff && (bytes[1] & 0xe0) === 0xe0),
    'an MP3 file');

  // Every control is named after its reply, and the page stays accessible.
  const names = await bot.locator('.controls button, .controls a, .copy-code').evaluateAll(
    (els) => els.filter((e) => !e.hidden).map((e) => e.getAttribute('aria-label')));
  assert.ok(names.every((n) => / the reply from /.test(n) || /of the reply from /.test(n)), names.join(' | '));
  assert.equal(new Set(names).size, names.length);
  assert.deepEqual(await accessibilityViolations(page), []);
  await page.emulateMedia({ colorScheme: 'dark' });
  assert.deepEqual(await accessibilityViolations(page), [], 'dark');
  await screenshot(page, 'replies-markdown-dark');
  await page.setViewportSize(phone);
  await bot.scrollIntoViewIfNeeded();
  await screenshot(page, 'replies-markdown-phone-dark');
  await page.emulateMedia({ colorScheme: 'light' });
  await screenshot(page, 'replies-markdown-phone-light');
  assert.deepEqual(unexpectedProblems(page), []);
  await page.context().close();
});

test('a reply is stopped while it is written, kept as stopped, and the last reply is written again', async () => {
  const page = await newPage(browser, desktop);
  await start(page);
  const before = await hungUp();
  await ask(page, 'tell me a story');
  await page.waitForSelector('#stop-writing:not([hidden]):not([disabled])');
  await page.waitForFunction(() => /word word/.test(document.querySelector('.message.bot.streaming')?.textContent || ''));
  await page.click('#stop-writing');
  const stopped = page.locator('.message.bot[data-stopped="true"]');
  await stopped.waitFor();
  assert.match(await stopped.locator('.text').textContent(), /^Once upon a time, (word ?)+$/);
  assert.match(await stopped.locator('.meta').textContent(), /stopped/);
  assert.equal(await page.isHidden('#stop-writing'), true);
  assert.equal(await page.isHidden('#typing'), true);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'message-input', 'back to the message box');
  assert.equal(await page.textContent('#announcer'), 'The reply was stopped.');
  // The model was hung up on, not left writing.
  for (let i = 0; i < 50 && await hungUp() === before; i += 1) await page.waitForTimeout(100);
  assert.ok(await hungUp() > before, 'the model call ended');
  await screenshot(page, 'replies-stopped');

  // Esc stops a reply being written, too.
  await ask(page, 'another story please');
  await page.waitForSelector('#stop-writing:not([disabled])');
  await page.waitForFunction(() => /word/.test(document.querySelector('.message.bot.streaming')?.textContent || ''));
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => document.querySelectorAll('.message.bot[data-stopped="true"]').length === 2);

  // Kept as stopped.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.locator('.message.bot[data-stopped="true"]').count(), 2);
  // One day separator above today's messages.
  assert.equal(await page.locator('#messages > li.day').count(), 1);
  assert.equal(await page.textContent('#messages > li.day'), 'Today');
  assert.equal(await page.locator('#messages > li').first().getAttribute('class'), 'day');

  // Only the last reply can be written again; doing so replaces it.
  const last = await reply(page, 'hello there');
  assert.match(await last.locator('.text').textContent(), /You said: hello there\./);
  const regenerate = page.locator('.message.bot:not([hidden]) .regenerate:not([hidden])');
  assert.equal(await regenerate.count(), 1, 'one Regenerate button, on the last reply');
  const oldId = await last.getAttribute('data-id');
  const bots = await page.locator('.message.bot').count();
  await regenerate.click();
  await page.waitForFunction(([old, n]) => {
    const replies = document.querySelectorAll('.message.bot[data-id]');
    const newest = replies[replies.length - 1];
    return replies.length === n && newest.dataset.id !== old && !newest.classList.contains('streaming');
  }, [oldId, bots]);
  assert.equal(await page.locator('.message.bot').count(), bots, 'replaced, not added');
  assert.equal(await page.locator(`.message.bot[data-id="${oldId}"]`).count(), 0);
  assert.match(await page.locator('.message.bot').last().locator('.text').textContent(), /You said: hello there\./);
  assert.match(await page.evaluate(() => document.activeElement.getAttribute('aria-label') || ''),
    /^Regenerate the reply from /, 'focus stays on the new reply\'s Regenerate');
  assert.deepEqual(unexpectedProblems(page), []);
  await page.context().close();
});
