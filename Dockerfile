# voxgate container image: `docker build -t voxgate .` (or docker compose).
#
# The builder compiles the dependencies in a layer of their own, from the
# workspace manifests and stub sources, so a change to voxgate's code
# rebuilds only voxgate, not the dependency tree; then the release binary.
# The runtime is a small Debian with the neural voice (Piper and its
# bundled voice, in a virtualenv, versions pinned in
# server/piper/requirements.txt), espeak-ng as the fallback voice, the
# speech recogniser (faster-whisper and Whisper tiny.en, pinned in
# server/whisper/requirements.txt) and the CA certificates, running as an
# unprivileged user.

# Every workspace manifest, and nothing else: this stage's output only
# changes when a manifest does, so the dependency layer below stays cached
# while sources change (the cargo-chef idea, without cargo-chef).
FROM rust:1.95.0-bookworm AS manifests
WORKDIR /src
COPY . .
RUN mkdir /manifests \
    && find . \( -name Cargo.toml -o -name Cargo.lock -o -name askama.toml \) -print0 \
        | xargs -0 cp --parents -t /manifests

FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
# Dependencies only: the manifests plus empty sources for what
# `-p voxgate` compiles (other members' targets are never built here).
COPY --from=manifests /manifests/ ./
# Builds are offline: sqlx's checked queries compile against .sqlx/.
COPY .cargo .cargo
RUN mkdir -p server/src crates/audio/src crates/realm/src \
    && touch server/src/lib.rs crates/audio/src/lib.rs crates/realm/src/lib.rs \
    && echo 'fn main() {}' > server/src/main.rs \
    && cargo build --release --locked -p voxgate

# The real sources. Touching them makes cargo rebuild voxgate's own crates
# even when the copied files are older than the stub build.
COPY server/src server/src
COPY .sqlx .sqlx
# The neural voice's and the recogniser's worker scripts are compiled into
# the binary.
COPY server/piper server/piper
COPY server/whisper server/whisper
COPY crates/audio/src crates/audio/src
COPY crates/realm/src crates/realm/src
COPY migrations migrations
COPY web/templates web/templates
COPY web/static web/static
RUN touch server/src/lib.rs server/src/main.rs crates/audio/src/lib.rs crates/realm/src/lib.rs \
    && cargo build --release --locked -p voxgate \
    && cp target/release/voxgate /usr/local/bin/voxgate

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates espeak-ng python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin voxgate
COPY server/piper /opt/piper-src
RUN python3 -m venv /opt/piper \
    && /opt/piper/bin/pip install --no-cache-dir --disable-pip-version-check \
        -r /opt/piper-src/requirements.txt
COPY server/whisper /opt/whisper-src
RUN python3 -m venv /opt/whisper \
    && /opt/whisper/bin/pip install --no-cache-dir --disable-pip-version-check \
        -r /opt/whisper-src/requirements.txt
COPY --from=builder /usr/local/bin/voxgate /usr/local/bin/voxgate

# Numeric so that "run as non-root" policies can check it.
USER 10001:10001
ENV VOXGATE_BIND=0.0.0.0:8080 \
    VOXGATE_LOG_FORMAT=json \
    VOXGATE_PIPER_PYTHON=/opt/piper/bin/python \
    VOXGATE_WHISPER_PYTHON=/opt/whisper/bin/python
EXPOSE 8080

# Ready = database reachable and the identity provider's keys loaded. No
# curl in the image: bash speaks HTTP/1.0 over /dev/tcp.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${VOXGATE_BIND##*:} && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == *' 200 '* ]]"]

ENTRYPOINT ["voxgate"]
CMD ["serve"]
