#!/usr/bin/env bash
# Makes the Keycloak admin console sign in at its own address.
#
# Keycloak 26's admin console signs in through the master realm's frontend
# URL, which is KC_HOSTNAME (the public origin) unless the realm says
# otherwise, and the public origin refuses /realms/master. This points the
# master realm's frontendUrl at the console's loopback-only address
# (KC_HOSTNAME_ADMIN). Idempotent; run it once Keycloak is up (the compose
# stack does, in the keycloak-admin-console one-shot service).
#
#   KEYCLOAK_URL  where this script reaches Keycloak (default http://keycloak:8080)
#   ADMIN_URL     the admin console's base URL (default http://localhost:8180)
#   KCADM         kcadm.sh (default /opt/keycloak/bin/kcadm.sh)
#
# The master admin's credentials come from KC_BOOTSTRAP_ADMIN_USERNAME and
# KC_BOOTSTRAP_ADMIN_PASSWORD; they are never printed.
set -euo pipefail
kcadm="${KCADM:-/opt/keycloak/bin/kcadm.sh}"
server="${KEYCLOAK_URL:-http://keycloak:8080}"
admin_url="${ADMIN_URL:-http://localhost:8180}"
config="${TMPDIR:-/tmp}/kcadm-$$.config"
trap 'rm -f "$config"' EXIT
"$kcadm" config credentials --config "$config" --server "$server" --realm master \
    --user "$KC_BOOTSTRAP_ADMIN_USERNAME" --password "$KC_BOOTSTRAP_ADMIN_PASSWORD" >/dev/null
"$kcadm" update realms/master --config "$config" -s "attributes.frontendUrl=$admin_url"
echo "master realm: the admin console signs in at $admin_url"
