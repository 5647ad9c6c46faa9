#!/usr/bin/env bash
# Set-up for a fresh machine, called by every Makefile target that needs Python.
#  1. installs Debian's ffmpeg, espeak-ng, chromium and chromedriver when they are missing;
#  2. creates (or reuses) a virtual environment OUTSIDE the clone, keyed by a hash of
#     constraints.txt and the dependency declarations in pyproject.toml, so repeated runs and CI
#     reuse it; the dependencies (and every extra) are installed with uv at exactly the versions
#     of constraints.txt;
#  3. installs this package (editable) into it.
# Prints the venv's path as its last line of stdout; everything else goes to stderr.
#
# Environment: SOS_PYTHON (interpreter, default python3), SOS_VENV_ROOT (where the venvs live),
# SOS_INSTALLER=pip (install the dependencies with pip instead of uv; same versions, slower).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${SOS_PYTHON:-python3}
venv_root=${SOS_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/sound-of-story/venvs}
installer=${SOS_INSTALLER:-uv}
constraints="$repo/constraints.txt"
# uv itself comes from PyPI at the version pinned in constraints.txt (it is in the dev extra too),
# into a small venv of its own beside the project's venvs.
uv_version=$(sed -n 's/^uv==\([^ #]*\).*/\1/p' "$constraints")

log() { echo "[bootstrap] $*" >&2; }

case "$installer" in
  uv | pip) ;;
  *) log "SOS_INSTALLER must be uv or pip, got '$installer'"; exit 2 ;;
esac

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

# --- 2. the virtual environment, keyed by the constraints and the declarations ----------
key=$("$python" - "$repo/pyproject.toml" "$constraints" <<'PY'
import hashlib, json, platform, sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
with open(sys.argv[2], "rb") as f:
    constraints = hashlib.sha256(f.read()).hexdigest()
stack = {
    "python": platform.python_version(),
    "machine": platform.machine(),
    "constraints": constraints,
    "dependencies": sorted(project["dependencies"]),
    "optional": {k: sorted(v) for k, v in sorted(project.get("optional-dependencies", {}).items())},
}
print(hashlib.sha256(json.dumps(stack, sort_keys=True).encode()).hexdigest()[:16])
PY
)
venv="$venv_root/$key"
stamp="$venv/.sos-deps-installed"

if [ ! -f "$stamp" ]; then
  log "creating virtual environment $venv (stack hash $key) with $installer; the first time this downloads about 3 GB"
  rm -rf "$venv"
  # The dependencies and every extra, as pyproject.toml declares them; constraints.txt fixes each version.
  # The project itself is installed below, so editing the code never invalidates this (expensive) step.
  requirements=$(mktemp -t sos-requirements.XXXXXX)
  "$python" - "$repo/pyproject.toml" > "$requirements" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
for dep in project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]:
    print(dep)
# the build tools of the editable install below (--no-build-isolation) and pip for the tests' wheel build
print("pip\nsetuptools\nwheel")
PY
  if [ "$installer" = uv ]; then
    uv_venv="$venv_root/.uv-$uv_version"
    if [ ! -x "$uv_venv/bin/uv" ]; then
      log "installing uv $uv_version into $uv_venv"
      rm -rf "$uv_venv"
      "$python" -m venv "$uv_venv"
      "$uv_venv/bin/python" -m pip install -qq "uv==$uv_version" >&2
    fi
    "$uv_venv/bin/uv" venv -q --python "$(command -v "$python")" "$venv" >&2
    "$uv_venv/bin/uv" pip install -q --python "$venv/bin/python" -r "$requirements" -c "$constraints" >&2
  else
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -qq -c "$constraints" pip >&2
    "$venv/bin/python" -m pip install -qq -r "$requirements" -c "$constraints" >&2
  fi
  cp "$requirements" "$venv/requirements.txt"
  rm -f "$requirements"
  # Every installed distribution must be pinned, at the pinned version: otherwise the suite would run
  # on a stack that constraints.txt does not record (a new dependency of a dependency, say).
  "$venv/bin/python" "$repo/.ci/compare_constraints.py" "$constraints" >&2 \
    || log "WARNING: $venv differs from constraints.txt (above); regenerate it with .ci/freeze_constraints.sh"
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
