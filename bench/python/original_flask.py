"""The original design, rebuilt from its description for comparison: a
Flask endpoint `GET /textToSpeech?LanguageCode=&VoiceId=&Text=` that calls
Amazon Polly's SynthesizeSpeech through boto3 on every request (no cache,
no streaming) and returns the whole MP3 at once.

Configuration: POLLY_ENDPOINT (the Polly stand-in), AWS_REGION,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
"""

import os

import boto3
from flask import Flask, Response, request

app = Flask(__name__)
polly = boto3.client(
    "polly",
    endpoint_url=os.environ["POLLY_ENDPOINT"],
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
)


@app.get("/textToSpeech")
def text_to_speech():
    text = request.args.get("Text", "")
    if not text:
        return {"error": "Text is required"}, 400
    result = polly.synthesize_speech(
        Text=text,
        TextType="text",
        VoiceId=request.args.get("VoiceId", "Joanna"),
        LanguageCode=request.args.get("LanguageCode", "en-US"),
        OutputFormat="mp3",
    )
    return Response(result["AudioStream"].read(), mimetype="audio/mpeg")
