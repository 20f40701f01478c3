#!/usr/bin/env bash
# Imports keycloak-realm/realm.json into a running Keycloak with
# `voxgate realm import` (see docs/deployment.md, "Realm import").
#
#   keycloak-realm/import.sh [--dry-run] [--if-exists skip|overwrite|fail] [...]
#
# Every argument is passed on to `voxgate realm import`. Defaults come from
# the environment:
#   KEYCLOAK_URL                 Keycloak base URL (default http://127.0.0.1:8180)
#   REALM_FILE                   realm file (default: realm.json next to this script)
#   KEYCLOAK_ADMIN_USER          administrator signed in through admin-cli; its
#   VOXGATE_REALM_ADMIN_PASSWORD   password (never put it on the command line)
#   KEYCLOAK_CLIENT_ID           or a service-account client; its
#   VOXGATE_REALM_CLIENT_SECRET    secret
#   VOXGATE_BIN                  the voxgate program (default: `voxgate` on PATH,
#                                else target/release or target/debug, else cargo run)
#
# Exit status is the command's: 0 done or nothing to do, 1 error, 2 usage,
# 3 conflict under --if-exists fail.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

args=(realm import --file "${REALM_FILE:-$here/realm.json}" --url "${KEYCLOAK_URL:-http://127.0.0.1:8180}")
if [ -n "${KEYCLOAK_CLIENT_ID:-}" ]; then
    args+=(--client-id "$KEYCLOAK_CLIENT_ID")
elif [ -n "${KEYCLOAK_ADMIN_USER:-}" ]; then
    args+=(--admin-user "$KEYCLOAK_ADMIN_USER")
fi

if [ -n "${VOXGATE_BIN:-}" ]; then
    exec "$VOXGATE_BIN" "${args[@]}" "$@"
elif command -v voxgate >/dev/null 2>&1; then
    exec voxgate "${args[@]}" "$@"
elif [ -x "$root/target/release/voxgate" ]; then
    exec "$root/target/release/voxgate" "${args[@]}" "$@"
elif [ -x "$root/target/debug/voxgate" ]; then
    exec "$root/target/debug/voxgate" "${args[@]}" "$@"
else
    cd "$root"
    exec cargo run --quiet -p voxgate -- "${args[@]}" "$@"
fi
