#!/usr/bin/env bash
# System packages the test suite needs (headless Chromium for the browser tests, the
# PostgreSQL server for the service's PostgreSQL store tests).
# Idempotent: installs only what is missing, and only where apt-get and root are available;
# elsewhere the tests that need these packages skip and say why.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# PostgreSQL server binaries for the service's store tests (they start a throwaway server).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: cannot install ${missing[*]} (needs root and apt-get); browser / PostgreSQL tests will skip" >&2
    exit 0
fi
echo "installing ${missing[*]} ..." >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
