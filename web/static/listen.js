// The chat page's microphone: press Talk (or hold Space outside the text
// box) to speak, press again (or let go) to send; or turn Conversation on
// to talk hands-free. The recording is 16-bit
// PCM WAV made in the page, recognised by POST /api/stt, put in the message
// box and sent as the user's message. Every way it can fail says so in the
// page; typing keeps working.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const mic = $('mic');
  const level = $('mic-level');
  const status = $('mic-status');
  const input = $('message-input');
  const composer = $('composer');
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const worklet = document.querySelector('meta[name="capture-worklet"]').content;
  // A little under the server's default limit (VOXGATE_STT_MAX_SECONDS).
  const MAX_SECONDS = 29;

  let recording = null;
  let busy = false;
  let conversation = null;
  // The microphone is being opened (the permission prompt may be up); a
  // release or second press meanwhile cancels it.
  let opening = null;

  function say(text) {
    status.textContent = text;
  }

  function setRecording(on) {
    mic.setAttribute('aria-pressed', on ? 'true' : 'false');
    mic.textContent = on ? 'Send speech' : 'Talk';
    level.hidden = !on;
    if (!on) level.value = 0;
  }

  // Opens the microphone and calls `onBlock(samples)` for each block of
  // audio; resolves to what closes it, or null after saying why it could
  // not open.
  async function openMicrophone(onBlock) {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say('Speaking needs a secure (https) connection to this site; type your message instead.');
      return null;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    } catch (error) {
      if (error && (error.name === 'NotAllowedError' || error.name === 'SecurityError')) {
        say('Microphone access was refused. Allow it in the browser’s site settings to talk, or type your message.');
      } else if (error && (error.name === 'NotFoundError' || error.name === 'OverconstrainedError')) {
        say('No microphone was found. Connect one to talk, or type your message.');
      } else {
        say('The microphone could not be started; type your message instead.');
      }
      return null;
    }
    const context = new AudioContext();
    try {
      await context.audioWorklet.addModule(worklet);
      const node = new AudioWorkletNode(context, 'voxgate-capture');
      node.port.onmessage = (event) => onBlock(event.data);
      context.createMediaStreamSource(stream).connect(node);
    } catch {
      stream.getTracks().forEach((t) => t.stop());
      context.close();
      say('This browser cannot record here; type your message instead.');
      return null;
    }
    return {
      rate: context.sampleRate,
      close() {
        stream.getTracks().forEach((t) => t.stop());
        context.close();
      },
    };
  }

  function loudness(block) {
    let sum = 0;
    for (let i = 0; i < block.length; i += 1) sum += block[i] * block[i];
    return Math.sqrt(sum / block.length);
  }

  async function start() {
    if (recording || busy || conversation || opening) return;
    const attempt = { cancelled: false };
    opening = attempt;
    const chunks = [];
    let samples = 0;
    let opened = null;
    opened = await openMicrophone((block) => {
      if (!recording) return;
      chunks.push(block);
      samples += block.length;
      level.value = Math.min(1, loudness(block) * 4);
      if (samples >= opened.rate * MAX_SECONDS) stop();
    });
    opening = null;
    if (!opened) return;
    if (attempt.cancelled) {
      // Let go (or pressed again) before the microphone was open.
      opened.close();
      say('');
      return;
    }
    recording = { microphone: opened, chunks, rate: opened.rate };
    setRecording(true);
    say('Listening… press again (or let go of Space) to send.');
  }

  function wav(chunks, rate) {
    // Never past the limit, however the last block fell.
    const length = Math.min(chunks.reduce((n, c) => n + c.length, 0), Math.floor(rate * MAX_SECONDS));
    const buffer = new ArrayBuffer(44 + length * 2);
    const view = new DataView(buffer);
    const text = (at, s) => { for (let i = 0; i < s.length; i += 1) view.setUint8(at + i, s.charCodeAt(i)); };
    text(0, 'RIFF'); view.setUint32(4, 36 + length * 2, true); text(8, 'WAVE');
    text(12, 'fmt '); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
    text(36, 'data'); view.setUint32(40, length * 2, true);
    let at = 44;
    const end = 44 + length * 2;
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length && at < end; i += 1) {
        const s = Math.max(-1, Math.min(1, chunk[i]));
        view.setInt16(at, s < 0 ? s * 0x8000 : s * 0x7fff, true);
        at += 2;
      }
    }
    return new Blob([buffer], { type: 'audio/wav' });
  }

  // What a refusal says in the page.
  function refused(status, detail, quietly) {
    if (status === 422) say(quietly ? 'Didn’t catch that; listening again.' : 'Nothing was heard. Try again, closer to the microphone, or type your message.');
    else if (status === 503) say('Speech recognition is not available right now; type your message instead.');
    else if (status === 429) say(detail || 'Too many recordings just now; wait a moment.');
    else say(detail || 'Your speech could not be recognised; type your message instead.');
  }

  // The events of a server-sent-events body, as they arrive.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  }

  // Recognises a recording and sends what was heard as the user's
  // message; the text so far shows in the message box while it is
  // recognised. Resolves true when a message was sent.
  async function recognise(chunks, rate, quietly) {
    busy = true;
    mic.disabled = true;
    say('Recognising…');
    try {
      const response = await fetch('/api/stt', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'audio/wav', 'X-CSRF-Token': csrf, Accept: 'text/event-stream' },
        body: wav(chunks, rate),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        refused(response.status, body.detail, quietly);
        return false;
      }
      // What the user had typed comes back if nothing is heard.
      const draft = input.value;
      let text = null;
      let failure = null;
      await readEvents(response, (name, data) => {
        if (name === 'partial') {
          input.value = data.text;
          input.dispatchEvent(new Event('input'));
        } else if (name === 'done') {
          text = data.text;
        } else if (name === 'error') {
          failure = data;
        }
      });
      if (text === null) {
        input.value = draft;
        input.dispatchEvent(new Event('input'));
        refused(failure ? failure.status : 502, failure && failure.detail, quietly);
        return false;
      }
      say('');
      input.value = text;
      input.dispatchEvent(new Event('input'));
      composer.requestSubmit();
      return true;
    } catch {
      say('Your speech could not be sent. Check your connection, or type your message.');
      return false;
    } finally {
      busy = false;
      mic.disabled = false;
    }
  }

  async function stop() {
    if (opening) {
      opening.cancelled = true;
      return;
    }
    if (!recording) return;
    const { microphone, chunks, rate } = recording;
    recording = null;
    setRecording(false);
    microphone.close();
    await recognise(chunks, rate, false);
  }

  // Conversation mode: the microphone stays open; an utterance starts when
  // the sound gets loud and ends after a pause, is sent, and the page
  // listens again once the reply has been spoken. Talking over a reply
  // stops it (barge-in). Esc or the button leaves the mode.
  const START_LEVEL = 0.02;
  const START_MS = 120;
  const END_QUIET_MS = 900;
  const BARGE_MS = 250;
  const PREROLL_MS = 400;
  const conversationButton = $('conversation');

  function setPhase(phase) {
    conversation.phase = phase;
    conversation.loudMs = 0;
    conversation.quietMs = 0;
    document.body.dataset.conversation = phase;
    if (phase === 'waiting') say('Conversation: listening… (Esc leaves)');
  }

  function onConversationBlock(block) {
    const c = conversation;
    if (!c || c.phase === 'opening') return;
    const ms = (block.length / c.rate) * 1000;
    // Blocks are a few milliseconds long: smooth their loudness over tens
    // of milliseconds so that the gaps inside words do not count as pauses.
    const rms = loudness(block);
    c.level += (rms - c.level) * Math.min(1, ms / 60);
    const loud = c.level > START_LEVEL;
    level.value = Math.min(1, c.level * 4);
    c.preroll.push(block);
    let kept = c.preroll.reduce((n, b) => n + b.length, 0);
    while (kept - c.preroll[0].length > (c.rate * PREROLL_MS) / 1000) kept -= c.preroll.shift().length;
    c.loudMs = loud ? c.loudMs + ms : 0;
    c.quietMs = loud ? 0 : c.quietMs + ms;
    if (c.phase === 'waiting' && c.loudMs >= START_MS) {
      c.chunks = c.preroll.slice();
      setPhase('speaking');
      say('Conversation: hearing you…');
    } else if (c.phase === 'speaking') {
      c.chunks.push(block);
      const length = c.chunks.reduce((n, b) => n + b.length, 0);
      if (c.quietMs >= END_QUIET_MS || length > c.rate * MAX_SECONDS) {
        const chunks = c.chunks;
        c.chunks = [];
        setPhase('recognising');
        recognise(chunks, c.rate, true).then((sent) => {
          if (!conversation) return;
          if (sent) {
            conversation.sentAt = Date.now();
            setPhase('replying');
          } else {
            setPhase('waiting');
          }
        });
      }
    } else if (c.phase === 'replying') {
      const speaking = document.body.dataset.speaking === 'true';
      const sendingNow = document.body.dataset.sending === 'true';
      // While the reply is still arriving the chat takes no new message:
      // talking over it waits until it is complete.
      if (speaking && !sendingNow && c.loudMs >= BARGE_MS) {
        // Talking over the reply: stop it and hear the user.
        document.dispatchEvent(new CustomEvent('voxgate:stop-speech'));
        document.body.dataset.bargeIns = String(Number(document.body.dataset.bargeIns || 0) + 1);
        c.chunks = c.preroll.slice();
        setPhase('speaking');
        say('Conversation: stopped the reply to hear you…');
      } else if (speaking) {
        c.heard = true;
      } else if (!sendingNow && (c.heard || Date.now() - c.sentAt > 2500)) {
        // The reply was spoken (or is not going to be): listen again.
        c.heard = false;
        setPhase('waiting');
      }
    }
  }

  async function enterConversation() {
    if (conversation || recording || busy || opening) return;
    const mode = { phase: 'opening', rate: 48000, level: 0, preroll: [], chunks: [], loudMs: 0, quietMs: 0, heard: false, sentAt: 0 };
    conversation = mode;
    const opened = await openMicrophone(onConversationBlock);
    if (conversation !== mode) {
      // Left (Esc) while the microphone was opening.
      if (opened) opened.close();
      return;
    }
    if (!opened) {
      conversation = null;
      return;
    }
    conversation.rate = opened.rate;
    conversation.microphone = opened;
    conversationButton.setAttribute('aria-pressed', 'true');
    level.hidden = false;
    setPhase('waiting');
  }

  function leaveConversation() {
    if (!conversation) return;
    if (conversation.microphone) conversation.microphone.close();
    conversation = null;
    conversationButton.setAttribute('aria-pressed', 'false');
    level.hidden = true;
    level.value = 0;
    delete document.body.dataset.conversation;
    say('');
  }

  conversationButton.addEventListener('click', () => (conversation ? leaveConversation() : enterConversation()));
  window.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && conversation) leaveConversation();
  });

  // While the microphone opens, a second press (or letting go of Space)
  // cancels: nothing is recorded or sent.
  mic.addEventListener('click', () => (recording || opening ? stop() : start()));
  // Hold Space to talk, outside the text box and the other controls.
  const typing = (target) => target === input || (target && ['INPUT', 'SELECT', 'TEXTAREA', 'BUTTON'].includes(target.tagName));
  window.addEventListener('keydown', (event) => {
    if (event.code === 'Space' && !event.repeat && !typing(event.target)) {
      event.preventDefault();
      start();
    }
  });
  window.addEventListener('keyup', (event) => {
    if (event.code === 'Space' && (recording || opening) && !typing(event.target)) {
      event.preventDefault();
      stop();
    }
  });
})();
