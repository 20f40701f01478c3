# Shared by scripts/dev and scripts/test: idempotent machine setup.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PKG... installs the Debian packages that are missing.
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# ensure_postgres starts the local cluster if it is installed but stopped.
ensure_postgres() {
    local url="${VOXGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    if psql "$url" -Atqc 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    if ! command -v pg_ctlcluster >/dev/null; then
        ensure_packages postgresql
    fi
    log "starting Postgres"
    local version
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
    as_root pg_ctlcluster "${version:-15}" main start || true
    for _ in $(seq 1 30); do
        psql "$url" -Atqc 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "Postgres is not reachable at $url" >&2
    return 1
}

ensure_rust() {
    if ! command -v cargo >/dev/null; then
        log "installing Rust"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
    fi
}

# wait_for_url URL SECONDS
wait_for_url() {
    for _ in $(seq 1 "$2"); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 1
    done
    return 1
}
