// The chat page: conversations, composer, speech playback with word
// highlighting, and the speech settings. All user-visible text is set
// with textContent (never parsed as markup), except a reply's `html`, which
// the server writes from the reply's Markdown with a fixed set of elements
// (server/src/chat/markdown.rs) and the page rebuilds node by node from
// that same set (REPLY_ELEMENTS). Every state-changing request carries the
// session's CSRF token.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const list = $('messages');
  const chat = $('chat');
  const input = $('message-input');
  const composer = $('composer');
  const sendButton = $('send');
  const stopWriting = $('stop-writing');
  const typing = $('typing');
  const announcer = $('announcer');
  const composerError = $('composer-error');
  const charCount = $('char-count');
  const audio = $('player');
  const voiceSelect = $('voice-select');
  const rateSelect = $('rate-select');
  const autoplayBox = $('autoplay');
  const loadEarlier = $('load-earlier');
  const empty = $('empty');
  const MAX_CHARS = 2000;

  let settings = { voice: null, language: null, autoplay: true, speechRate: 1 };
  let voices = [];
  let sending = false;
  // The reply being written: the id of the message it answers, once known.
  let writing = null;
  let oldestCursor = null;
  // The open conversation's id; null before the user's first message.
  let current = null;

  // ---- HTTP -------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `Request failed (${status})`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(method, path, body, accept) {
    const headers = { Accept: accept || 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
    const options = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) {
      // The session ended: sign in again and come back here.
      window.location.assign('/auth/login?return_to=%2F');
      throw new ApiError(401, { detail: 'Your session has ended.' });
    }
    if (!response.ok) {
      let problem = null;
      try { problem = await response.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, problem);
    }
    return response;
  }

  async function apiJson(method, path, body) {
    const response = await api(method, path, body);
    return response.status === 204 ? null : response.json();
  }

  // ---- Text and words ----------------------------------------------------

  const encoder = new TextEncoder();
  const isDropped = (c) => {
    const code = c.codePointAt(0);
    return (code < 0x20 || (code >= 0x7f && code < 0xa0) ||
      (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069));
  };

  // Renders `text` into `container` as word spans and returns the words
  // with their byte ranges in the server's normalised text (whitespace
  // runs collapsed to one space, control characters dropped, trimmed),
  // which is what speech-mark offsets refer to.
  function renderWords(container, text) {
    container.textContent = '';
    const words = [];
    let offset = 0;
    const parts = text.split(/(\s+|\u200b+)/);
    for (const part of parts) {
      if (part === '') continue;
      if (/^(\s|\u200b)+$/.test(part)) {
        container.appendChild(document.createTextNode(part));
        continue;
      }
      const kept = Array.from(part).filter((c) => !isDropped(c)).join('');
      if (kept === '') continue;
      if (words.length > 0) offset += 1;
      const span = document.createElement('span');
      span.className = 'word';
      span.textContent = kept;
      container.appendChild(span);
      const length = encoder.encode(kept).length;
      words.push({ spans: [span], text: kept, start: offset, end: offset + length });
      offset += length;
    }
    return words;
  }

  // Renders a reply's HTML into `container` and wraps its words as
  // renderWords does, with offsets into the words the server speaks (the
  // text without markup, code blocks left out): a word runs across inline
  // elements (**bold**er is one word), never across blocks.
  // The elements (and attributes) a reply's HTML may hold: what the
  // server's writer emits. The page rebuilds the reply from them node by
  // node, so even a writer bug could not put anything else in the page:
  // another element leaves only its text, a link to another scheme only
  // its words.
  const REPLY_ELEMENTS = {
    P: ['class'], UL: [], OL: ['start'], LI: [], BLOCKQUOTE: [], PRE: [], CODE: ['data-language'],
    EM: [], STRONG: [], DEL: [], A: ['href', 'title'], BR: [], HR: [],
  };

  function rebuild(from, into) {
    for (const node of from.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) {
        into.appendChild(document.createTextNode(node.data));
        continue;
      }
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      const allowed = REPLY_ELEMENTS[node.tagName];
      const href = node.getAttribute('href') || '';
      if (!allowed || (node.tagName === 'A' && !/^(https?:\/\/|mailto:)/i.test(href))) {
        rebuild(node, into);
        continue;
      }
      const el = document.createElement(node.tagName.toLowerCase());
      for (const attribute of allowed) {
        const value = node.getAttribute(attribute);
        if (value === null) continue;
        if (attribute === 'class' && value !== 'heading') continue;
        el.setAttribute(attribute, value);
      }
      if (el.tagName === 'A') {
        el.rel = 'noopener noreferrer';
        el.target = '_blank';
      }
      rebuild(node, el);
      into.appendChild(el);
    }
  }

  function renderReply(container, html, name) {
    container.textContent = '';
    // Parsed in a document of its own (inert: nothing in it runs or loads).
    rebuild(new DOMParser().parseFromString(html, 'text/html').body, container);
    const words = [];
    let offset = 0;
    let word = null;
    let block = null;
    const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT, {
      acceptNode: (node) => (node.parentElement.closest('pre') ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
    });
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    for (const node of nodes) {
      const inBlock = node.parentElement.closest('p, li, blockquote') || container;
      if (inBlock !== block) { word = null; block = inBlock; }
      const fragment = document.createDocumentFragment();
      for (const part of node.data.split(/(\s+|\u200b+)/)) {
        if (part === '') continue;
        if (/^(\s|\u200b)+$/.test(part)) {
          fragment.appendChild(document.createTextNode(part));
          word = null;
          continue;
        }
        const kept = Array.from(part).filter((c) => !isDropped(c)).join('');
        if (kept === '') continue;
        const span = document.createElement('span');
        span.className = 'word';
        span.textContent = kept;
        fragment.appendChild(span);
        const length = encoder.encode(kept).length;
        if (word) {
          word.spans.push(span);
          word.text += kept;
          word.end += length;
        } else {
          if (words.length > 0) offset += 1;
          word = { spans: [span], text: kept, start: offset, end: offset + length };
          words.push(word);
        }
        offset += length;
      }
      node.replaceWith(fragment);
    }
    // Code blocks: not spoken, copied with a button of their own.
    container.querySelectorAll('pre').forEach((pre, i) => {
      const copy = button('Copy code', 'button small secondary copy-code', () => copyText(pre.textContent, copy),
        `Copy code block ${i + 1} of ${name()}`);
      const box = document.createElement('div');
      box.className = 'code-block';
      pre.replaceWith(box);
      box.append(copy, pre);
    });
    return words;
  }

  async function copyText(text, from) {
    try {
      await navigator.clipboard.writeText(text);
      // Said, not shown: the button keeps the name it is known by.
      announcer.textContent = 'Copied.';
      from.dataset.copied = 'true';
    } catch (_) {
      announcer.textContent = 'The browser did not allow copying.';
    }
  }

  function wordAt(words, position) {
    let found = null;
    for (const w of words) {
      if (w.start <= position) found = w; else break;
    }
    return found;
  }

  // ---- Speech playback -----------------------------------------------------

  // One reply being spoken, possibly in segments (the first sentence of a
  // streamed reply, then the rest). Each segment has its own audio and
  // marks; `offset` moves its mark offsets into the whole reply's text.
  const player = {
    record: null,
    segments: [],
    index: 0,
    frame: 0,
    current: null,
  };

  function setState(record, state) {
    if (!record) return;
    record.el.dataset.audio = state;
    record.playButton.textContent = state === 'playing' ? 'Pause' : 'Play';
    nameControls(record);
  }

  // Each reply's buttons are named after it ("Play the reply from 3:18 PM:
  // I can explain…"), so a list of controls tells them apart.
  function replyName(record) {
    const words = record.body.textContent.trim().split(/\s+/).slice(0, 6).join(' ');
    return `the reply from ${record.time.textContent}${words ? `: ${words}…` : ''}`;
  }

  function nameControls(record) {
    if (!record.playButton) return;
    const which = replyName(record);
    const playing = record.el.dataset.audio === 'playing';
    record.playButton.setAttribute('aria-label', `${playing ? 'Pause' : 'Play'} ${which}`);
    record.stopButton.setAttribute('aria-label', `Stop ${which}`);
    record.replayButton.setAttribute('aria-label', `Replay ${which} from the start`);
    record.copyButton.setAttribute('aria-label', `Copy ${which}`);
    record.download.setAttribute('aria-label', `Download the audio of ${which}`);
    record.regenerateButton.setAttribute('aria-label', `Regenerate ${which}`);
  }

  function clearHighlight(record) {
    if (!record) return;
    for (const w of record.words) for (const span of w.spans) span.classList.remove('speaking');
    record.spoken = null;
  }

  function highlight(record, word) {
    if (record.spoken === word) return;
    if (record.spoken) for (const span of record.spoken.spans) span.classList.remove('speaking');
    record.spoken = word;
    if (word) {
      for (const span of word.spans) span.classList.add('speaking');
      record.el.dataset.spokenWord = String(record.words.indexOf(word));
    }
  }

  async function loadMarks(segment) {
    segment.marks = null;
    try {
      const response = await api('GET', segment.marksUrl);
      const marks = await response.json();
      segment.marks = Array.isArray(marks)
        ? marks.filter((m) => m.type === 'word' && Number.isFinite(m.time))
        : [];
    } catch (_) {
      segment.marks = [];
    }
  }

  // Timing estimate, used when the engine gave no word marks: each word
  // takes time in proportion to its length plus a pause after
  // punctuation, spread over the audio's real duration.
  function estimatedWord(record, segment, ms) {
    const duration = audio.duration;
    if (!Number.isFinite(duration) || duration <= 0) return null;
    const words = record.words.filter((w) => w.start >= segment.offset && w.start < segment.end);
    if (words.length === 0) return null;
    const weight = (w) => w.text.length + 2 + (/[.!?]$/.test(w.text) ? 6 : /[,;:]$/.test(w.text) ? 3 : 0);
    const total = words.reduce((sum, w) => sum + weight(w), 0);
    const target = (ms / 1000 / duration) * total;
    let seen = 0;
    for (const w of words) {
      seen += weight(w);
      if (seen > target) return w;
    }
    return words[words.length - 1];
  }

  function tick() {
    const record = player.record;
    const segment = player.current;
    if (!record || !segment || audio.paused) return;
    const ms = audio.currentTime * 1000;
    let word = null;
    if (segment.marks && segment.marks.length > 0) {
      let mark = null;
      for (const m of segment.marks) {
        if (m.time <= ms) mark = m; else break;
      }
      if (mark) word = wordAt(record.words, mark.start + segment.offset);
      record.el.dataset.timing = 'marks';
    } else if (segment.marks) {
      word = estimatedWord(record, segment, ms);
      record.el.dataset.timing = 'estimate';
    }
    if (word) highlight(record, word);
    player.frame = requestAnimationFrame(tick);
  }

  function stop() {
    cancelAnimationFrame(player.frame);
    audio.pause();
    audio.removeAttribute('src');
    audio.load();
    const record = player.record;
    clearHighlight(record);
    setState(record, 'stopped');
    player.record = null;
    player.segments = [];
    player.current = null;
    player.pending = false;
    player.waiting = false;
    document.body.dataset.speaking = 'false';
  }

  // The microphone's conversation mode (listen.js) stops a reply when the
  // user starts talking over it.
  document.addEventListener('voxgate:stop-speech', () => {
    player.silenced = true;
    if (player.record) stop();
  });

  async function playSegment(index) {
    const segment = player.segments[index];
    player.index = index;
    player.current = segment;
    if (segment.marks === undefined) loadMarks(segment);
    audio.src = segment.url;
    audio.playbackRate = settings.speechRate;
    await audio.play();
  }

  // Starts `record`'s speech from the beginning. Resolves false when the
  // browser blocked playback (autoplay policy).
  async function play(record, segments) {
    if (player.record && player.record !== record) stop();
    clearHighlight(record);
    player.record = record;
    player.segments = segments;
    setState(record, 'loading');
    try {
      await playSegment(0);
      return true;
    } catch (error) {
      setState(record, 'stopped');
      player.record = null;
      if (error && error.name === 'NotAllowedError') {
        showNote(record, 'Your browser blocked automatic playback. Press Play to listen.');
      } else if (error && error.name !== 'AbortError') {
        showNote(record, 'This reply could not be played.');
      }
      return false;
    }
  }

  function fullSegments(record) {
    return [{ url: record.speech.url, marksUrl: record.speech.marksUrl, offset: 0, end: Infinity }];
  }

  function showNote(record, text) {
    record.note.textContent = text;
    record.note.hidden = false;
  }

  audio.addEventListener('playing', () => {
    // Not for the silent clip that unlocks the audio element.
    document.body.dataset.speaking = player.record ? 'true' : 'false';
    setState(player.record, 'playing');
    cancelAnimationFrame(player.frame);
    player.frame = requestAnimationFrame(tick);
  });
  audio.addEventListener('pause', () => {
    if (player.record && !audio.ended) setState(player.record, 'paused');
  });
  audio.addEventListener('ended', () => {
    const next = player.index + 1;
    if (player.record && next < player.segments.length) {
      playSegment(next).catch(() => stop());
    } else if (player.record && player.pending) {
      // The rest of a streamed reply is not known yet: wait for it.
      player.waiting = true;
    } else {
      stop();
    }
  });
  audio.addEventListener('error', () => {
    if (player.record && audio.getAttribute('src')) {
      showNote(player.record, 'The audio for this reply could not be loaded.');
      stop();
    }
  });

  // A queued segment (the rest of a streamed reply) became known.
  function appendSegment(record, segment) {
    if (player.record !== record) return;
    player.segments.push(segment);
    player.pending = false;
    if (player.waiting) {
      player.waiting = false;
      playSegment(player.segments.length - 1).catch(() => stop());
    }
  }

  // Browsers allow sound after the user interacted with the page. Playing
  // a silent clip on the first gesture also unlocks the audio element in
  // browsers that require a gesture per element.
  function unlockAudio() {
    window.removeEventListener('pointerdown', unlockAudio, true);
    window.removeEventListener('keydown', unlockAudio, true);
    if (player.record || audio.getAttribute('src')) return;
    const url = URL.createObjectURL(silentWav());
    audio.src = url;
    audio.play().then(() => {
      if (audio.src === url) { audio.pause(); audio.removeAttribute('src'); audio.load(); }
    }).catch(() => {}).finally(() => URL.revokeObjectURL(url));
  }
  window.addEventListener('pointerdown', unlockAudio, true);
  window.addEventListener('keydown', unlockAudio, true);

  function silentWav() {
    const samples = 800; // 0.1 s at 8 kHz, 8-bit mono
    const buffer = new ArrayBuffer(44 + samples);
    const v = new DataView(buffer);
    const ascii = (at, s) => { for (let i = 0; i < s.length; i += 1) v.setUint8(at + i, s.charCodeAt(i)); };
    ascii(0, 'RIFF'); v.setUint32(4, 36 + samples, true); ascii(8, 'WAVE');
    ascii(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, 8000, true); v.setUint32(28, 8000, true); v.setUint16(32, 1, true); v.setUint16(34, 8, true);
    ascii(36, 'data'); v.setUint32(40, samples, true);
    for (let i = 0; i < samples; i += 1) v.setUint8(44 + i, 128);
    return new Blob([buffer], { type: 'audio/wav' });
  }

  // ---- Messages ------------------------------------------------------------

  function formatTime(iso) {
    const date = iso ? new Date(iso) : new Date();
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function button(label, className, onClick, ariaLabel) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = className;
    b.textContent = label;
    if (ariaLabel) b.setAttribute('aria-label', ariaLabel);
    b.addEventListener('click', onClick);
    return b;
  }

  function createMessage(author, text, createdAt, html) {
    const el = document.createElement('li');
    el.className = `message ${author}`;
    const bubble = document.createElement('div');
    bubble.className = 'bubble';
    // A reply's Markdown has blocks of its own: a div, not a paragraph.
    const body = document.createElement(author === 'bot' ? 'div' : 'p');
    body.className = author === 'bot' ? 'text rendered' : 'text';
    bubble.appendChild(body);
    const meta = document.createElement('p');
    meta.className = 'meta';
    const who = document.createElement('span');
    who.className = 'author';
    who.textContent = author === 'user' ? 'You' : 'voxgate';
    const time = document.createElement('time');
    time.dateTime = createdAt || new Date().toISOString();
    time.textContent = formatTime(createdAt);
    meta.append(who, ' · ', time);
    el.append(bubble, meta);
    const record = { el, body, bubble, meta, time, author, words: [], speech: null, text };
    if (typeof html === 'string') setReply(record, text, html);
    else record.words = renderWords(body, text);
    list.appendChild(el);
    empty.hidden = true;
    return record;
  }

  function setReply(record, text, html) {
    record.text = text;
    record.body.classList.remove('plain');
    record.words = renderReply(record.body, html, () => replyName(record));
  }

  // A reply the user stopped while it was written says so.
  function markStopped(record) {
    if (record.meta.querySelector('.stopped-mark')) return;
    const mark = document.createElement('span');
    mark.className = 'stopped-mark';
    mark.textContent = 'stopped';
    record.meta.append(' · ', mark);
    record.el.dataset.stopped = 'true';
  }

  function setTime(record, createdAt) {
    record.time.dateTime = createdAt;
    record.time.textContent = formatTime(createdAt);
  }

  function addControls(record) {
    const controls = document.createElement('div');
    controls.className = 'controls';
    controls.setAttribute('role', 'group');
    controls.setAttribute('aria-label', 'Reply audio');
    record.playButton = button('Play', 'button small play', () => {
      if (!record.speech) return;
      if (player.record === record) {
        if (audio.paused) audio.play().catch(() => {}); else audio.pause();
      } else {
        play(record, fullSegments(record));
      }
    });
    record.stopButton = button('Stop', 'button small secondary stop', () => {
      if (player.record === record) stop();
    });
    record.replayButton = button('Replay', 'button small secondary replay', () => {
      if (record.speech) play(record, fullSegments(record));
    });
    record.copyButton = button('Copy', 'button small secondary copy', () => copyText(record.text || '', record.copyButton));
    record.download = document.createElement('a');
    record.download.className = 'button small secondary download';
    record.download.textContent = 'Download';
    record.regenerateButton = button('Regenerate', 'button small secondary regenerate', () => regenerate(record));
    controls.append(record.playButton, record.stopButton, record.replayButton, record.download,
      record.copyButton, record.regenerateButton);
    record.note = document.createElement('p');
    record.note.className = 'note';
    record.note.hidden = true;
    record.el.append(controls, record.note);
    record.controls = controls;
    setSpeech(record, record.speech);
    nameControls(record);
  }

  function setSpeech(record, speech) {
    record.speech = speech || null;
    for (const b of [record.playButton, record.stopButton, record.replayButton]) {
      b.disabled = !record.speech;
    }
    // A link without an address is not a link (and not focusable).
    if (record.speech) {
      record.download.href = record.speech.url;
      record.download.download = `voxgate-reply-${record.el.dataset.id || 'new'}.mp3`;
      record.download.hidden = false;
    } else {
      record.download.removeAttribute('href');
      record.download.hidden = true;
    }
    if (!record.speech) record.el.dataset.audio = 'none';
    else if (!record.el.dataset.audio || record.el.dataset.audio === 'none') record.el.dataset.audio = 'stopped';
  }

  function addFollowUps(record, followUps) {
    if (!followUps || followUps.length === 0) return;
    const box = document.createElement('div');
    box.className = 'follow-ups';
    box.setAttribute('role', 'group');
    box.setAttribute('aria-label', 'Suggested questions');
    for (const question of followUps) {
      box.appendChild(button(question, 'chip', () => {
        if (!sending) send(question);
      }));
    }
    record.el.appendChild(box);
  }

  function renderStored(m) {
    const record = createMessage(m.author, m.text, m.createdAt, m.author === 'bot' ? (m.html || '') : undefined);
    record.el.dataset.id = String(m.id);
    record.el.dataset.day = dayOf(m.createdAt);
    if (m.author === 'bot') {
      record.speech = m.speech;
      addControls(record);
      addFollowUps(record, m.followUps);
      if (m.stopped) markStopped(record);
    }
    return record;
  }

  // ---- Days ----------------------------------------------------------------------

  function dayOf(iso) {
    const d = iso ? new Date(iso) : new Date();
    return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
  }

  function dayLabel(iso) {
    const d = new Date(iso);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (d.toDateString() === today.toDateString()) return 'Today';
    if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
    return d.toLocaleDateString([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
  }

  // A separator before the first message of each day (set again after
  // every change to the list: earlier pages arrive above).
  function markDays() {
    for (const el of [...list.querySelectorAll('li.day')]) el.remove();
    let last = null;
    for (const el of [...list.children]) {
      const iso = el.querySelector('.meta time')?.dateTime;
      if (!iso) continue;
      const day = dayOf(iso);
      if (day !== last) {
        const li = document.createElement('li');
        li.className = 'day';
        const time = document.createElement('time');
        time.dateTime = iso.slice(0, 10);
        time.textContent = dayLabel(iso);
        li.appendChild(time);
        list.insertBefore(li, el);
        last = day;
      }
    }
  }

  // Only the last reply of the conversation can be written again.
  function markLastReply() {
    const replies = [...list.querySelectorAll('li.message.bot')];
    replies.forEach((el, i) => {
      const regen = el.querySelector('.regenerate');
      if (regen) regen.hidden = i !== replies.length - 1;
    });
  }

  function listChanged() {
    markDays();
    markLastReply();
  }

  function scrollToEnd() {
    chat.scrollTop = chat.scrollHeight;
    list.lastElementChild?.scrollIntoView({ block: 'end' });
  }

  async function loadHistory(before) {
    const query = before ? `?limit=50&before=${encodeURIComponent(before)}` : '?limit=50';
    const page = current
      ? await apiJson('GET', `/api/chat/conversations/${encodeURIComponent(current)}/messages${query}`)
      : { items: [], nextBefore: null };
    if (before) {
      const first = list.firstElementChild;
      const fragment = [];
      for (const m of page.items) fragment.push(renderStored(m).el);
      for (const el of fragment) list.insertBefore(el, first);
    } else {
      list.textContent = '';
      for (const m of page.items) renderStored(m);
      scrollToEnd();
    }
    listChanged();
    oldestCursor = page.nextBefore;
    loadEarlier.hidden = !oldestCursor;
    empty.hidden = list.children.length > 0;
  }

  // ---- Sending ----------------------------------------------------------------

  function parseEvents(buffer, onEvent) {
    let index;
    while ((index = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, index);
      buffer = buffer.slice(index + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) onEvent(name, JSON.parse(data.join('\n')));
    }
    return buffer;
  }

  function setSending(on) {
    sending = on;
    document.body.dataset.sending = on ? 'true' : 'false';
    typing.hidden = !on;
    sendButton.disabled = on;
    if (!on) writing = null;
    stopWriting.hidden = !on;
    stopWriting.disabled = true;
    chat.setAttribute('aria-busy', on ? 'true' : 'false');
    for (const b of list.querySelectorAll('.regenerate')) b.disabled = on;
  }

  // Stops the reply being written: the server keeps what was written.
  async function stopReply() {
    if (!writing) return;
    const id = writing;
    stopWriting.disabled = true;
    try {
      await apiJson('POST', `/api/chat/messages/${encodeURIComponent(id)}/stop`);
    } catch (error) {
      // Already complete: its done event is on the way.
      if (!(error instanceof ApiError && error.status === 409)) composerError.textContent = error.message;
    }
  }
  stopWriting.addEventListener('click', () => {
    stopReply();
    input.focus();
  });

  async function send(text) {
    composerError.textContent = '';
    const mine = createMessage('user', text);
    listChanged();
    scrollToEnd();
    const body = current ? { message: text, conversationId: current } : { message: text };
    const ok = await stream('/api/chat', body, mine);
    if (!ok) {
      if (!mine.bot) mine.el.remove();
      if (input.value.trim() === '') input.value = text;
      updateCount();
      listChanged();
      if (list.children.length === 0) empty.hidden = false;
    }
  }

  // Writes the last reply of the conversation again, in place of `old`.
  async function regenerate(old) {
    if (sending || !current) return;
    composerError.textContent = '';
    if (player.record === old) stop();
    const mine = { el: old.el.previousElementSibling, bot: null };
    while (mine.el && !mine.el.classList.contains('user')) mine.el = mine.el.previousElementSibling;
    if (!mine.el) return;
    old.el.remove();
    const ok = await stream(`/api/chat/conversations/${encodeURIComponent(current)}/regenerate`, undefined, mine);
    // What the server holds now, whatever happened half-way.
    if (!ok) await loadHistory().catch(showLoadError);
    const replies = list.querySelectorAll('li.message.bot');
    (replies[replies.length - 1]?.querySelector('.regenerate:not([hidden])') || input).focus();
  }

  // Posts to `path` and shows the reply as its events arrive, below
  // `mine` (the user's message). Resolves whether a reply came.
  async function stream(path, body, mine) {
    // A reply the user talked over (listen.js) is not started again.
    player.silenced = false;
    setSending(true);
    let bot = null;
    let streamed = '';
    let earlySpeech = null;
    try {
      const response = await api('POST', path, body, 'text/event-stream');
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      let finished = false;
      const onEvent = (name, data) => {
        if (name === 'started') {
          writing = data.userMessageId;
          mine.el.dataset.id = String(data.userMessageId);
          stopWriting.disabled = false;
        } else if (name === 'delta') {
          if (!bot) {
            bot = createMessage('bot', '');
            bot.body.classList.add('plain');
            bot.el.classList.add('streaming');
            mine.bot = bot;
            listChanged();
          }
          streamed += data.text;
          // Shown as written until it is complete; then as Markdown.
          bot.body.textContent = streamed;
          scrollToEnd();
        } else if (name === 'speech' && bot) {
          addControls(bot);
          markLastReply();
          earlySpeech = data.speech;
          if (settings.autoplay) {
            player.pending = true;
            play(bot, [{ url: data.speech.url, marksUrl: data.speech.marksUrl, offset: 0, end: Infinity }]);
          }
        } else if (name === 'done') {
          finished = true;
          if (!bot) {
            bot = createMessage('bot', '');
            mine.bot = bot;
          }
          finish(mine, bot, data, earlySpeech);
        } else if (name === 'error') {
          throw new ApiError(data.status || 500, data);
        }
      };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), onEvent);
      }
      if (!finished) throw new ApiError(502, { detail: 'The reply was interrupted. Please try again.' });
      return true;
    } catch (error) {
      composerError.textContent = error instanceof ApiError ? error.message : 'The message could not be sent. Check your connection and try again.';
      return false;
    } finally {
      setSending(false);
    }
  }

  function finish(mine, bot, done, earlySpeech) {
    keepDraft();
    showQuota();
    if (current !== done.conversationId) current = done.conversationId;
    loadConversations().catch(() => {});
    mine.el.dataset.id = String(done.userMessageId);
    bot.el.dataset.id = String(done.id);
    bot.el.classList.remove('streaming');
    setTime(bot, done.createdAt);
    setReply(bot, done.reply, done.html);
    if (!bot.controls) addControls(bot);
    nameControls(bot);
    setSpeech(bot, done.speech);
    addFollowUps(bot, done.followUps);
    if (done.stopped) {
      markStopped(bot);
      // What was being said of it stops too.
      if (player.record === bot) stop();
      announcer.textContent = 'The reply was stopped.';
    } else {
      // The words, without the code blocks' buttons.
      announcer.textContent = `voxgate says: ${bot.words.map((w) => w.text).join(' ')}`;
    }
    listChanged();
    scrollToEnd();
    if (done.stopped) return;
    if (earlySpeech && player.record === bot) {
      // The first sentence is already playing: continue with the rest.
      if (done.restSpeech) {
        const offset = done.restOffset || 0;
        if (player.segments[0]) player.segments[0].end = offset;
        appendSegment(bot, { url: done.restSpeech.url, marksUrl: done.restSpeech.marksUrl, offset, end: Infinity });
      } else {
        player.pending = false;
        if (player.waiting) stop();
      }
    } else if (settings.autoplay && done.speech && !player.silenced) {
      play(bot, fullSegments(bot));
    }
  }

  function updateCount() {
    charCount.textContent = String(input.value.length);
  }

  // The draft is kept in this browser until it is sent, so a session that
  // ends mid-sentence (and the sign-in after it) loses nothing.
  const DRAFT = 'voxgate-draft';
  function keepDraft() {
    try {
      if (input.value.trim() === '') localStorage.removeItem(DRAFT);
      else localStorage.setItem(DRAFT, input.value);
    } catch (_) { /* storage refused: nothing to keep it in */ }
  }
  function restoreDraft() {
    try {
      const draft = localStorage.getItem(DRAFT);
      if (draft && input.value === '') {
        input.value = draft;
        updateCount();
      }
    } catch (_) { /* nothing kept */ }
  }

  // What is left of today's speech quota, shown before it runs out; a
  // reply's speech is paid for when it is first heard.
  const quota = $('speech-quota');
  // Only a reply's playing: the silent clip that unlocks audio plays on the
  // first click too, the sign-out button's included.
  audio.addEventListener('playing', () => {
    if (player.record) showQuota();
  });
  async function showQuota() {
    try {
      // Not through api(): a refresh in the background must never send the
      // page to sign in (say, while the user is signing out).
      const response = await fetch('/api/me/speech-quota', {
        credentials: 'same-origin',
        headers: { Accept: 'application/json' },
      });
      if (!response.ok) return;
      const q = await response.json();
      const resets = new Date(q.resetsAt).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      if (q.limit === null) {
        quota.textContent = 'No daily speech limit';
        quota.classList.remove('low');
      } else {
        quota.textContent = `Speech left today: ${q.remaining.toLocaleString()} of ${q.limit.toLocaleString()} characters (resets ${resets})`;
        quota.classList.toggle('low', q.remaining < q.limit / 10);
      }
    } catch (_) { /* the chat works without it */ }
  }

  composer.addEventListener('submit', (event) => {
    event.preventDefault();
    if (sending) return;
    const text = input.value.trim();
    if (text === '') {
      composerError.textContent = 'Type a message first.';
      input.focus();
      return;
    }
    if (text.length > MAX_CHARS) {
      composerError.textContent = `Messages can be at most ${MAX_CHARS} characters.`;
      return;
    }
    input.value = '';
    updateCount();
    send(text);
  });

  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  input.addEventListener('input', () => {
    updateCount();
    keepDraft();
  });

  loadEarlier.addEventListener('click', () => {
    if (oldestCursor) loadHistory(oldestCursor).catch(showLoadError);
  });

  const dialog = $('confirm-clear');
  $('clear-history').addEventListener('click', () => dialog.showModal());
  dialog.addEventListener('close', async () => {
    if (dialog.returnValue !== 'confirm') return;
    // Only what was on screen when clearing started goes: a message sent
    // meanwhile stays.
    const cleared = [...list.children];
    try {
      stop();
      await apiJson('DELETE', '/api/chat/history');
      for (const el of cleared) el.remove();
      oldestCursor = null;
      current = null;
      await loadConversations();
      loadEarlier.hidden = true;
      empty.hidden = list.children.length > 0;
      announcer.textContent = 'Your history was cleared.';
    } catch (error) {
      composerError.textContent = error.message;
    }
    input.focus();
  });

  // ---- Conversations -------------------------------------------------------------

  const panel = $('conversations-panel');
  const conversationList = $('conversation-list');
  const searchBox = $('conversation-search');
  const searchResults = $('search-results');
  const searchStatus = $('search-status');
  // Open beside the chat on wide screens, folded above it on phones.
  panel.open = window.matchMedia('(min-width: 40.01rem)').matches;

  // Today's conversations by the time, older ones by the day.
  function formatWhen(iso) {
    const date = new Date(iso);
    return date.toDateString() === new Date().toDateString()
      ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : date.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' });
  }

  function markCurrent() {
    for (const li of conversationList.children) {
      if (li.dataset.id === current) li.setAttribute('aria-current', 'true');
      else li.removeAttribute('aria-current');
    }
  }

  async function loadConversations() {
    const page = await apiJson('GET', '/api/chat/conversations?limit=100');
    conversationList.textContent = '';
    for (const c of page.items) {
      const li = document.createElement('li');
      li.className = 'conversation';
      li.dataset.id = c.id;
      const when = formatWhen(c.updatedAt);
      // Named by what it shows: the title and when it was last used.
      const open = button('', 'open', () => openConversation(c.id));
      const title = document.createElement('span');
      title.className = 'title';
      title.textContent = c.title;
      const time = document.createElement('time');
      time.dateTime = c.updatedAt;
      time.textContent = when;
      open.append(title, time);
      li.append(open,
        button('Rename', 'rename', () => askRename(c), `Rename ${c.title}, ${when}`),
        button('Delete', 'delete', () => askDelete(c), `Delete ${c.title}, ${when}`));
      conversationList.appendChild(li);
    }
    markCurrent();
    return page.items;
  }

  async function openConversation(id) {
    if (sending) return;
    stop();
    current = id;
    markCurrent();
    composerError.textContent = '';
    await loadHistory().catch(showLoadError);
    if (!window.matchMedia('(min-width: 40.01rem)').matches) panel.open = false;
    input.focus();
  }

  $('new-conversation').addEventListener('click', async () => {
    if (sending) return;
    try {
      const created = await apiJson('POST', '/api/chat/conversations', {});
      await loadConversations();
      await openConversation(created.id);
      announcer.textContent = 'A new conversation was started.';
    } catch (error) {
      composerError.textContent = error.message;
    }
  });

  const renameDialog = $('rename-dialog');
  const renameInput = $('rename-input');
  let renaming = null;
  function askRename(c) {
    renaming = c;
    renameInput.value = c.title;
    $('rename-error').textContent = '';
    renameDialog.showModal();
    renameInput.select();
  }
  renameDialog.addEventListener('close', async () => {
    const c = renaming;
    renaming = null;
    if (renameDialog.returnValue !== 'confirm' || !c) return;
    const title = renameInput.value.trim();
    if (title === '' || title === c.title) return;
    try {
      await apiJson('PATCH', `/api/chat/conversations/${encodeURIComponent(c.id)}`, { title });
      await loadConversations();
      announcer.textContent = `The conversation is now called ${title}.`;
    } catch (error) {
      composerError.textContent = error.message;
    }
    conversationList.querySelector(`li[data-id="${c.id}"] .open`)?.focus();
  });

  const deleteDialog = $('confirm-delete');
  let deleting = null;
  function askDelete(c) {
    deleting = c;
    $('confirm-delete-name').textContent = c.title;
    deleteDialog.showModal();
  }
  deleteDialog.addEventListener('close', async () => {
    const c = deleting;
    deleting = null;
    if (deleteDialog.returnValue !== 'confirm' || !c) return;
    try {
      await apiJson('DELETE', `/api/chat/conversations/${encodeURIComponent(c.id)}`);
      const left = await loadConversations();
      if (current === c.id) {
        current = left.length > 0 ? left[0].id : null;
        markCurrent();
        stop();
        await loadHistory();
      }
      announcer.textContent = `The conversation “${c.title}” was deleted.`;
    } catch (error) {
      composerError.textContent = error.message;
    }
    (conversationList.querySelector('[aria-current="true"] .open') || $('new-conversation')).focus();
  });

  // Searching one's own messages, as the user types (after a short pause).
  let searchTimer = null;
  let searchRun = 0;
  searchBox.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 250);
  });
  async function search() {
    const q = searchBox.value.trim();
    const run = ++searchRun;
    searchResults.textContent = '';
    if (q.length < 2) {
      searchResults.hidden = true;
      searchStatus.textContent = '';
      return;
    }
    try {
      const found = await apiJson('GET', `/api/chat/search?q=${encodeURIComponent(q)}&limit=20`);
      if (run !== searchRun) return;
      for (const hit of found.items) {
        const li = document.createElement('li');
        const text = hit.message.text.length > 90 ? `${hit.message.text.slice(0, 90)}…` : hit.message.text;
        const open = button('', 'found', () => openConversation(hit.conversationId));
        const where = document.createElement('span');
        where.className = 'where';
        where.textContent = hit.conversationTitle;
        const what = document.createElement('span');
        what.textContent = text;
        open.append(what, where);
        li.appendChild(open);
        searchResults.appendChild(li);
      }
      searchResults.hidden = found.items.length === 0;
      searchStatus.textContent = found.items.length === 0
        ? 'No message contains that.'
        : `${found.items.length} message${found.items.length === 1 ? '' : 's'} found.`;
    } catch (error) {
      if (run === searchRun) searchStatus.textContent = error.message;
    }
  }

  // ---- Keyboard shortcuts ------------------------------------------------------

  const shortcuts = $('shortcuts');
  $('show-shortcuts').addEventListener('click', () => shortcuts.showModal());
  const inField = (target) => target && (['INPUT', 'SELECT', 'TEXTAREA'].includes(target.tagName) || target.isContentEditable);
  window.addEventListener('keydown', (event) => {
    if (document.querySelector('dialog[open]')) return;
    if (event.key === 'Escape' && (player.record || writing)) {
      if (writing) stopReply();
      if (player.record) stop();
      return;
    }
    if (event.ctrlKey && event.shiftKey && !event.altKey && event.key.toLowerCase() === 'o') {
      event.preventDefault();
      $('new-conversation').click();
      return;
    }
    if (inField(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === '/') {
      event.preventDefault();
      input.focus();
    } else if (event.key === '?') {
      event.preventDefault();
      shortcuts.showModal();
    }
  });

  // ---- Settings -----------------------------------------------------------------

  // Saves run one after another, each sending the settings as they are
  // when it starts, so quick changes cannot overtake each other.
  let saving = Promise.resolve();
  function saveSettings() {
    saving = saving.then(async () => {
      try {
        await apiJson('PUT', '/api/me/settings', settings);
        document.body.dataset.settingsSaved = String(Number(document.body.dataset.settingsSaved || 0) + 1);
      } catch (error) {
        composerError.textContent = `Settings were not saved: ${error.message}`;
      }
    });
    return saving;
  }

  function showSettings() {
    autoplayBox.checked = settings.autoplay;
    const rate = String(settings.speechRate);
    if (![...rateSelect.options].some((o) => o.value === rate)) {
      const option = document.createElement('option');
      option.value = rate;
      option.textContent = `${rate}×`;
      rateSelect.appendChild(option);
    }
    rateSelect.value = rate;
    voiceSelect.value = settings.voice || '';
  }

  function showVoices() {
    voiceSelect.length = 1;
    for (const v of voices) {
      const option = document.createElement('option');
      option.value = v.id;
      option.textContent = v.language ? `${v.name} (${v.language})` : v.name;
      voiceSelect.appendChild(option);
    }
    if (settings.voice && !voices.some((v) => v.id === settings.voice)) {
      const option = document.createElement('option');
      option.value = settings.voice;
      option.textContent = settings.voice;
      voiceSelect.appendChild(option);
    }
  }

  voiceSelect.addEventListener('change', () => {
    settings.voice = voiceSelect.value || null;
    settings.language = null;
    saveSettings();
  });
  rateSelect.addEventListener('change', () => {
    settings.speechRate = Number(rateSelect.value);
    audio.playbackRate = settings.speechRate;
    saveSettings();
  });
  autoplayBox.addEventListener('change', () => {
    settings.autoplay = autoplayBox.checked;
    saveSettings();
  });

  function showLoadError(error) {
    composerError.textContent = `Could not load your conversation: ${error.message}`;
  }

  async function start() {
    const [loadedSettings, loadedVoices] = await Promise.allSettled([
      apiJson('GET', '/api/me/settings'),
      apiJson('GET', '/api/voices'),
    ]);
    if (loadedSettings.status === 'fulfilled') settings = loadedSettings.value;
    if (loadedVoices.status === 'fulfilled' && Array.isArray(loadedVoices.value)) voices = loadedVoices.value;
    showVoices();
    showSettings();
    try {
      const conversations = await loadConversations();
      current = conversations.length > 0 ? conversations[0].id : null;
      markCurrent();
      await loadHistory();
    } catch (error) {
      showLoadError(error);
    }
    restoreDraft();
    // Awaited: "ready" means every first load has answered.
    await showQuota();
    document.body.dataset.ready = 'true';
    input.focus();
  }

  start();
})();
