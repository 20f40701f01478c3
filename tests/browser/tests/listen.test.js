// The chat page's microphone in real Chromium, fed a recorded question as
// its microphone (--use-file-for-fake-audio-capture): push-to-talk is
// recognised by voxgate's local recogniser, sent, answered and spoken; a
// refused permission is said in the page and typing keeps working.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASE, launch, newPage, signIn, screenshot, unexpectedProblems, waitForSpeech } from './support.js';

const MIC = process.env.FAKE_MIC_WAV;
if (!MIC) throw new Error('FAKE_MIC_WAV is not set: run scripts/browser-test');

let browser;
before(async () => {
  browser = await launch([
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    `--use-file-for-fake-audio-capture=${MIC}`,
  ]);
});
after(async () => { await browser?.close(); });

const replies = '.message.bot[data-id]';

// Space talks only outside the text box, which the page focuses once its
// history has loaded: wait for that, then leave the box.
async function leaveTheTextBox(page) {
  await page.waitForLoadState('networkidle');
  await page.evaluate(() => document.activeElement?.blur());
  assert.equal(await page.evaluate(() => document.activeElement === document.body), true);
}

test('push-to-talk: a spoken question is recognised, sent, answered and spoken', async () => {
  const page = await newPage(browser);
  await page.context().grantPermissions(['microphone'], { origin: BASE });
  await signIn(page, 'bob', 'bob');
  // Counts below are taken once the history has loaded.
  await page.waitForLoadState('networkidle');
  const before = await page.locator(replies).count();

  await page.click('#mic');
  await page.waitForFunction(() => document.getElementById('mic').getAttribute('aria-pressed') === 'true');
  // The level meter shows that sound arrives.
  await page.waitForFunction(() => document.getElementById('mic-level').value > 0.02, null, { timeout: 10000 });
  await screenshot(page, 'listen-recording');
  // The file is a question between silences, a little under three seconds.
  await page.waitForTimeout(2800);
  await page.click('#mic');
  assert.equal(await page.getAttribute('#mic', 'aria-pressed'), 'false');

  await page.waitForFunction((n) => document.querySelectorAll('.message.bot[data-id]').length > n, before, { timeout: 30000 });
  const said = await page.locator('.message.user').last().locator('.text').textContent();
  assert.match(said.toLowerCase(), /what can you do/, `recognised: ${said}`);
  const reply = page.locator(replies).last();
  assert.match(await reply.locator('.text').textContent(), /I can explain what voxgate is/);
  const audio = await waitForSpeech(page);
  assert.ok(audio.duration > 1, 'the reply is spoken');
  assert.equal(await page.textContent('#mic-status'), '', 'no complaint left in the page');
  await screenshot(page, 'listen-answered');
  assert.deepEqual(unexpectedProblems(page), []);
});

test('holding Space talks; letting go sends', async () => {
  const page = await newPage(browser);
  await page.context().grantPermissions(['microphone'], { origin: BASE });
  await signIn(page, 'bob', 'bob');
  // Counts below are taken once the history has loaded.
  await page.waitForLoadState('networkidle');
  const before = await page.locator(replies).count();
  await leaveTheTextBox(page);
  await page.keyboard.down('Space');
  await page.waitForFunction(() => document.getElementById('mic').getAttribute('aria-pressed') === 'true');
  await page.waitForTimeout(2800);
  await page.keyboard.up('Space');
  await page.waitForFunction((n) => document.querySelectorAll('.message.bot[data-id]').length > n, before, { timeout: 30000 });
  const said = await page.locator('.message.user').last().locator('.text').textContent();
  assert.match(said.toLowerCase(), /what can you do/);
});

test('letting go of Space before the microphone is open records and sends nothing', async () => {
  const page = await newPage(browser);
  await page.context().grantPermissions(['microphone'], { origin: BASE });
  await signIn(page, 'bob', 'bob');
  // Counts below are taken once the history has loaded.
  await page.waitForLoadState('networkidle');
  // The microphone takes a while to open (as behind a permission
  // prompt), so it is still opening when Space is let go.
  await page.addInitScript(() => {
    const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    window.microphoneOpenings = 0;
    navigator.mediaDevices.getUserMedia = async (constraints) => {
      window.microphoneOpenings += 1;
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return open(constraints);
    };
  });
  await page.reload();
  const sent = [];
  page.on('request', (r) => { if (r.url().includes('/api/stt')) sent.push(r.url()); });
  await leaveTheTextBox(page);
  const before = await page.locator('.message.user').count();
  await page.keyboard.down('Space');
  await page.keyboard.up('Space');
  await page.waitForTimeout(3000);
  assert.equal(await page.evaluate(() => window.microphoneOpenings), 1, 'Space started opening the microphone');
  assert.equal(await page.getAttribute('#mic', 'aria-pressed'), 'false', 'not recording');
  assert.deepEqual(sent, [], 'nothing sent to the recogniser');
  assert.equal(await page.locator('.message.user').count(), before, 'no message');
  assert.deepEqual(unexpectedProblems(page), []);
});

test('a refused microphone is said in the page, and typing still works', async () => {
  const denying = await launch(['--use-fake-device-for-media-stream']);
  try {
    const page = await newPage(denying);
    await signIn(page, 'bob', 'bob');
    await page.waitForLoadState('networkidle');
    await page.click('#mic');
    await page.waitForFunction(() => document.getElementById('mic-status').textContent !== '');
    assert.match(await page.textContent('#mic-status'), /Microphone access was refused/);
    assert.equal(await page.getAttribute('#mic', 'aria-pressed'), 'false');
    await screenshot(page, 'listen-refused');
    const before = await page.locator(replies).count();
    await page.fill('#message-input', 'what can you do');
    await page.press('#message-input', 'Enter');
    await page.waitForFunction((n) => document.querySelectorAll('.message.bot[data-id]').length > n, before);
    assert.deepEqual(unexpectedProblems(page), []);
  } finally {
    await denying.close();
  }
});

test('conversation mode holds turns hands-free, talking over a reply stops it, and Esc leaves', async () => {
  const page = await newPage(browser);
  await page.context().grantPermissions(['microphone'], { origin: BASE });
  await signIn(page, 'bob', 'bob');
  // Counts below are taken once the history has loaded.
  await page.waitForLoadState('networkidle');
  const asked = await page.locator('.message.user').count();
  await page.click('#conversation');
  await page.waitForFunction(() => document.getElementById('conversation').getAttribute('aria-pressed') === 'true');
  // The microphone keeps repeating the question: each one is heard, sent
  // and answered with nobody touching the page, and the repeat that comes
  // while a reply is being spoken stops it.
  await page.waitForFunction((n) => document.querySelectorAll('.message.user').length >= n + 2, asked, { timeout: 60000 });
  await page.waitForFunction(() => Number(document.body.dataset.bargeIns || 0) >= 1, null, { timeout: 60000 });
  const said = await page.locator('.message.user').evaluateAll((els) => els.slice(-2).map((e) => e.querySelector('.text').textContent));
  for (const text of said) assert.match(text.toLowerCase(), /what can you do/);
  await screenshot(page, 'listen-conversation');
  await page.keyboard.press('Escape');
  assert.equal(await page.getAttribute('#conversation', 'aria-pressed'), 'false');
  assert.equal(await page.evaluate(() => document.body.dataset.conversation), undefined);
  assert.deepEqual(unexpectedProblems(page), []);
});

// A 16 kHz WAV of `seconds` of silence, written for Chromium to play as
// its microphone.
function silentWav(seconds) {
  const samples = 16000 * seconds;
  const b = Buffer.alloc(44 + samples * 2);
  b.write('RIFF', 0); b.writeUInt32LE(36 + samples * 2, 4); b.write('WAVE', 8);
  b.write('fmt ', 12); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(16000, 24); b.writeUInt32LE(32000, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(samples * 2, 40);
  const path = join(tmpdir(), `voxgate-silence-${process.pid}.wav`);
  writeFileSync(path, b);
  return path;
}

test('a recording of silence says that nothing was heard, and sends nothing', async () => {
  const silence = silentWav(3);
  const quiet = await launch([
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    `--use-file-for-fake-audio-capture=${silence}`,
  ]);
  try {
    const page = await newPage(quiet);
    await page.context().grantPermissions(['microphone'], { origin: BASE });
    await signIn(page, 'bob', 'bob');
    await page.waitForLoadState('networkidle');
    const sent = await page.locator('.message.user').count();
    await page.click('#mic');
    await page.waitForFunction(() => document.getElementById('mic').getAttribute('aria-pressed') === 'true');
    await page.waitForTimeout(1500);
    await page.click('#mic');
    await page.waitForFunction(() => /Nothing was heard/.test(document.getElementById('mic-status').textContent), null, { timeout: 20000 });
    assert.equal(await page.locator('.message.user').count(), sent, 'no message was sent');
    assert.equal(await page.inputValue('#message-input'), '', 'the message box is as it was');
    assert.deepEqual(unexpectedProblems(page), []);
  } finally {
    await quiet.close();
    rmSync(silence, { force: true });
  }
});

test('without a microphone the page says so', async () => {
  const deaf = await launch();
  try {
    const page = await newPage(deaf);
    await page.context().grantPermissions(['microphone'], { origin: BASE });
    await signIn(page, 'bob', 'bob');
    await page.waitForLoadState('networkidle');
    await page.click('#mic');
    await page.waitForFunction(() => document.getElementById('mic-status').textContent !== '');
    assert.match(await page.textContent('#mic-status'), /No microphone was found/);
    assert.equal(await page.getAttribute('#mic', 'aria-pressed'), 'false');
  } finally {
    await deaf.close();
  }
});
