// Shared set-up for the browser tests: one Chromium per test file, a
// fresh browser context (cookie jar) per user, and sign-in through the
// Keycloak stand-in's real login form.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

export const BASE = process.env.VOXGATE_URL;
export const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
if (!BASE) throw new Error('VOXGATE_URL is not set: run scripts/browser-test');
mkdirSync(ARTIFACTS, { recursive: true });

// `extraArgs`: more Chromium switches (a fake microphone, say).
export async function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--autoplay-policy=no-user-gesture-required',
      ...extraArgs,
    ],
    // Chromium reads the certificate authorities it trusts from the NSS
    // database under $HOME (scripts/stack puts its local CA there).
    env: process.env.BROWSER_HOME ? { ...process.env, HOME: process.env.BROWSER_HOME } : undefined,
  });
}

// A new context with its own cookies; console errors and CSP violations
// are collected so tests can assert there were none.
// `options`: more context options (`colorScheme: 'dark'`, say).
export async function newPage(browser, viewport = { width: 1280, height: 860 }, options = {}) {
  const context = await browser.newContext({ viewport, ...options });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (message) => {
    // Failed loads are recorded with their URL below instead.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      page.problems.push(message.text());
    }
  });
  page.on('response', (response) => {
    // Only voxgate's own responses: the Keycloak stand-in has no favicon.
    if (response.status() >= 400 && response.url().startsWith(BASE)) {
      page.problems.push(`status of ${response.status()}: ${response.request().method()} ${response.url()}`);
    }
  });
  page.on('pageerror', (error) => page.problems.push(String(error)));
  return page;
}

// Fills the Keycloak login form the app redirected to.
export async function submitLogin(page, username, password) {
  await page.waitForSelector('#kc-form-login');
  await page.fill('#username', username);
  await page.fill('#password', password);
  await Promise.all([page.waitForLoadState('load'), page.click('#kc-login')]);
}

// `base`: the voxgate to sign in to (scripts/browser-test runs a second
// one whose bot is a language model, at VOXGATE_MODEL_URL).
export async function signIn(page, username, password, path = '/', base = BASE) {
  await page.goto(`${base}${path}`);
  await submitLogin(page, username, password);
  await page.waitForURL(`${base}${path}`);
  await page.waitForSelector('body[data-ready="true"]');
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
}

// Problems other than the responses a test provoked on purpose (e.g. 422
// for invalid input); Chromium logs every failed fetch as an error.
export function unexpectedProblems(page, expectedStatuses = []) {
  return page.problems.filter((p) => !expectedStatuses.some((s) => p.includes(`status of ${s}`)));
}

// On the admin page: creates a user with a temporary password and waits
// for the new row.
export async function createUser(admin, { username, first, last, password }) {
  await admin.fill('#new-username', username);
  await admin.fill('#new-email', `${username}@example.com`);
  await admin.fill('#new-first', first);
  await admin.fill('#new-last', last);
  await admin.fill('#new-password', password);
  await admin.click('#create-user');
  await admin.waitForSelector(`#user-rows tr[data-username="${username}"]`);
}

// Waits until the chat page's player is past half a second of the reply
// and playing; returns what it plays.
export async function waitForSpeech(page, timeout = 20000) {
  await page.waitForFunction(() => {
    const audio = document.getElementById('player');
    return audio.currentTime > 0.5 && !audio.paused;
  }, null, { timeout });
  return page.evaluate(() => {
    const a = document.getElementById('player');
    return { duration: a.duration, src: a.currentSrc, rate: a.playbackRate };
  });
}

// axe-core, run inside the page through the DevTools protocol (the page's
// Content-Security-Policy would refuse it as a script tag).
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

// Serious and critical accessibility violations of the page as it is now
// (axe-core's WCAG 2.1 A and AA rules and its best practices), one line each.
export async function accessibilityViolations(page) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}
