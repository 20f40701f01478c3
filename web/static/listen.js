// The chat page's microphone: press Talk (or hold Space outside the text
// box) to speak, press again (or let go) to send. The recording is 16-bit
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
  const MAX_SECONDS = 30;

  let recording = null;
  let busy = false;

  function say(text) {
    status.textContent = text;
  }

  function setRecording(on) {
    mic.setAttribute('aria-pressed', on ? 'true' : 'false');
    mic.textContent = on ? 'Send speech' : 'Talk';
    level.hidden = !on;
    if (!on) level.value = 0;
  }

  async function start() {
    if (recording || busy) return;
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say('Speaking needs a secure (https) connection to this site; type your message instead.');
      return;
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
      return;
    }
    const context = new AudioContext();
    try {
      await context.audioWorklet.addModule(worklet);
    } catch {
      stream.getTracks().forEach((t) => t.stop());
      context.close();
      say('This browser cannot record here; type your message instead.');
      return;
    }
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, 'voxgate-capture');
    const chunks = [];
    let samples = 0;
    node.port.onmessage = (event) => {
      const block = event.data;
      chunks.push(block);
      samples += block.length;
      let sum = 0;
      for (let i = 0; i < block.length; i += 1) sum += block[i] * block[i];
      level.value = Math.min(1, Math.sqrt(sum / block.length) * 4);
      if (samples > context.sampleRate * MAX_SECONDS) stop();
    };
    source.connect(node);
    recording = { stream, context, chunks, rate: context.sampleRate };
    setRecording(true);
    say('Listening… press again (or let go of Space) to send.');
  }

  function wav(chunks, rate) {
    const length = chunks.reduce((n, c) => n + c.length, 0);
    const buffer = new ArrayBuffer(44 + length * 2);
    const view = new DataView(buffer);
    const text = (at, s) => { for (let i = 0; i < s.length; i += 1) view.setUint8(at + i, s.charCodeAt(i)); };
    text(0, 'RIFF'); view.setUint32(4, 36 + length * 2, true); text(8, 'WAVE');
    text(12, 'fmt '); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
    text(36, 'data'); view.setUint32(40, length * 2, true);
    let at = 44;
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length; i += 1) {
        const s = Math.max(-1, Math.min(1, chunk[i]));
        view.setInt16(at, s < 0 ? s * 0x8000 : s * 0x7fff, true);
        at += 2;
      }
    }
    return new Blob([buffer], { type: 'audio/wav' });
  }

  async function stop() {
    if (!recording) return;
    const { stream, context, chunks, rate } = recording;
    recording = null;
    setRecording(false);
    stream.getTracks().forEach((t) => t.stop());
    context.close();
    busy = true;
    mic.disabled = true;
    say('Recognising…');
    try {
      const response = await fetch('/api/stt', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'audio/wav', 'X-CSRF-Token': csrf },
        body: wav(chunks, rate),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        if (response.status === 422) say('Nothing was heard. Try again, closer to the microphone, or type your message.');
        else if (response.status === 503) say('Speech recognition is not available right now; type your message instead.');
        else if (response.status === 429) say(body.detail || 'Too many recordings just now; wait a moment.');
        else say(body.detail || 'Your speech could not be recognised; type your message instead.');
        return;
      }
      say('');
      input.value = body.text;
      input.dispatchEvent(new Event('input'));
      composer.requestSubmit();
    } catch {
      say('Your speech could not be sent. Check your connection, or type your message.');
    } finally {
      busy = false;
      mic.disabled = false;
    }
  }

  mic.addEventListener('click', () => (recording ? stop() : start()));
  // Hold Space to talk, outside the text box and the other controls.
  const typing = (target) => target === input || (target && ['INPUT', 'SELECT', 'TEXTAREA', 'BUTTON'].includes(target.tagName));
  window.addEventListener('keydown', (event) => {
    if (event.code === 'Space' && !event.repeat && !typing(event.target)) {
      event.preventDefault();
      start();
    }
  });
  window.addEventListener('keyup', (event) => {
    if (event.code === 'Space' && recording && !typing(event.target)) {
      event.preventDefault();
      stop();
    }
  });
})();
