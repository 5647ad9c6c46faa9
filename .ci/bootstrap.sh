#!/usr/bin/env bash
# Set-up for a fresh machine, called by every Makefile target that needs Python.
#  1. installs Debian's ffmpeg and espeak-ng when they are missing;
#  2. creates (or reuses) a virtual environment OUTSIDE the clone, keyed by a hash of the
#     dependency pins in pyproject.toml, so repeated runs and CI reuse it;
#  3. installs this package (editable) with its dev extra into it.
# Prints the venv's path as its last line of stdout; everything else goes to stderr.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${SOS_PYTHON:-python3}
venv_root=${SOS_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/sound-of-story/venvs}

log() { echo "[bootstrap] $*" >&2; }

# One set-up at a time: parallel `make` runs (or helpers) must not build the same venv twice.
mkdir -p "$venv_root"
exec 9>"$venv_root/.lock"
flock 9

# --- 1. system tools -------------------------------------------------------------------
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
# The web app's test drives Debian's headless Chromium (selenium + chromedriver).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  log "installing Debian packages: $pkgs"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  apt_log=$(mktemp -t sos-apt.XXXXXX)
  # shellcheck disable=SC2086
  if ! { "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends $pkgs; } >"$apt_log" 2>&1; then
    tail -n 30 "$apt_log" >&2
    log "apt-get failed installing: $pkgs (full log: $apt_log)"
    exit 1
  fi
  rm -f "$apt_log"
fi

# --- 2. the virtual environment, keyed by the pins -------------------------------------
key=$("$python" - "$repo/pyproject.toml" <<'PY'
import hashlib, json, sys, tomllib, platform
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
pins = {
    "python": platform.python_version(),
    "machine": platform.machine(),
    "dependencies": sorted(project["dependencies"]),
    "optional": {k: sorted(v) for k, v in sorted(project.get("optional-dependencies", {}).items())},
}
print(hashlib.sha256(json.dumps(pins, sort_keys=True).encode()).hexdigest()[:16])
PY
)
venv="$venv_root/$key"
stamp="$venv/.sos-deps-installed"

if [ ! -f "$stamp" ]; then
  log "creating virtual environment $venv (pins hash $key); the first time this downloads about 5 GB"
  rm -rf "$venv"
  mkdir -p "$venv_root"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -qq --upgrade pip "setuptools>=77" wheel >&2
  # Install the pinned dependencies first; the project itself is installed below, so
  # editing the code never invalidates this (expensive) step.
  "$venv/bin/python" - "$repo/pyproject.toml" > "$venv/requirements.txt" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
for dep in project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]:
    print(dep)
PY
  "$venv/bin/python" -m pip install -qq -r "$venv/requirements.txt" >&2
  touch "$stamp"
else
  log "reusing virtual environment $venv"
fi

# --- 3. this package, editable, without touching the pinned dependencies ------------------
# Reinstalled when the clone's path or its pyproject.toml (entry points, packages) changed.
project_id="$repo $(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [ "$(cat "$venv/.sos-project" 2>/dev/null)" != "$project_id" ]; then
  log "installing sound-of-story (editable) from $repo"
  "$venv/bin/python" -m pip install -qq --no-deps --no-build-isolation -e "$repo" >&2
  echo "$project_id" > "$venv/.sos-project"
fi

echo "$venv"
