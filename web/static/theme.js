// The colour theme: the system's (prefers-color-scheme), or light or dark
// as chosen with the top bar's toggle and kept in this browser. Loaded in
// <head> without `defer`, so the chosen theme applies before the page
// paints (no flash of the other one).
'use strict';

(() => {
  const KEY = 'voxgate-theme';
  const ORDER = ['system', 'light', 'dark'];
  const root = document.documentElement;
  const stored = () => {
    try { return localStorage.getItem(KEY); } catch (_) { return null; }
  };
  const apply = (theme) => {
    if (theme === 'light' || theme === 'dark') root.dataset.theme = theme;
    else delete root.dataset.theme;
  };
  apply(stored());
  document.addEventListener('DOMContentLoaded', () => {
    const toggle = document.getElementById('theme-toggle');
    if (!toggle) return;
    let theme = ORDER.includes(stored()) ? stored() : 'system';
    const show = () => {
      toggle.textContent = `Theme: ${theme}`;
      toggle.setAttribute('aria-label', `Colour theme: ${theme}. Change it`);
    };
    show();
    toggle.addEventListener('click', () => {
      theme = ORDER[(ORDER.indexOf(theme) + 1) % ORDER.length];
      try {
        if (theme === 'system') localStorage.removeItem(KEY); else localStorage.setItem(KEY, theme);
      } catch (_) { /* storage refused: the choice lasts for this page */ }
      apply(theme);
      show();
    });
  });
})();
