#!/usr/bin/env bash
# Installs what pylium needs, idempotently and quickly when already installed:
# the Debian packages in scripts/apt-packages.txt (only the missing ones), then .venv
# with the project and its dev dependencies (only when pyproject.toml changed).
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t wanted < <(grep -v '^\s*#' scripts/apt-packages.txt | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Prefer the interpreter on PATH when it is 3.11+ (pyenv or Debian's).
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "setup: $PY is older than 3.11" >&2; exit 1; }

stamp=.venv/.pylium-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
fi

# The Hubble UI's front-end libraries from npm (ui/package-lock.json) into ui/node_modules,
# served as static files by `pylium hubble ui` (no bundler); only when the lock file changed.
# Debian's nodejs comes without npm (NodeSource's includes it): add Debian's npm if missing.
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: npm is missing; run as root to install it" >&2
    exit 1
  fi
  echo "setup: installing npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
ui_stamp=ui/node_modules/.pylium-installed
ui_want="$(sha256sum ui/package-lock.json | cut -d' ' -f1)"
if [ ! -f "$ui_stamp" ] || [ "$(cat "$ui_stamp")" != "$ui_want" ]; then
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
  echo "$ui_want" > "$ui_stamp"
fi
