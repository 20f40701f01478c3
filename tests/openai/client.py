"""Drives voxgate's OpenAI-compatible audio endpoints with the official
`openai` client, as a chat front-end would: a Keycloak access token is the
API key. Usage: client.py BASE_URL UTTERANCE.wav OUT.mp3

Prints one JSON line: what the client got back."""

import json
import os
import sys

from openai import OpenAI


def main():
    base, wav, out = sys.argv[1:4]
    client = OpenAI(base_url=base, api_key=os.environ["VOXGATE_TOKEN"], max_retries=0)
    with open(wav, "rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f).text
    with open(wav, "rb") as f:
        plain = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="text"
        )
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello from voxgate."
    ) as response:
        content_type = response.headers.get("content-type")
        response.stream_to_file(out)
    refused = None
    try:
        client.audio.speech.create(model="tts-1", voice="alloy", input="x", response_format="flac")
    except Exception as e:  # the client raises on any 4xx
        refused = getattr(e, "status_code", None)
    print(json.dumps({
        "text": text,
        "plain": plain if isinstance(plain, str) else str(plain),
        "speech_content_type": content_type,
        "refused_status": refused,
    }))


if __name__ == "__main__":
    main()
