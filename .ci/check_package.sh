#!/usr/bin/env bash
# The packaging check (CI, after the suite; `make check-package`):
#  1. build: the sdist and the wheel with `python -m build` (the wheel is built from the unpacked
#     sdist, so a file missing from the sdist fails here);
#  2. resolve: pip resolves the wheel with every extra for each Python of SOS_RESOLVE_PYTHONS
#     (default 3.11 3.12 3.13) against PyPI alone, twice: with pyproject's ranges, and with
#     constraints.txt (the suite's exact stack). Run by that Python's own pip where the interpreter
#     is found (environment markers evaluated for it), else `--python-version` (markers as 3.11);
#  3. install: the wheel, without extras, into a fresh venv for each Python of SOS_SMOKE_PYTHONS
#     (default 3.11 3.12 3.13; one with no interpreter here is skipped, said so in the summary), by uv
#     with constraints.txt, from uv's cache (the bootstrap filled it for 3.11; other Pythons download
#     their own binary wheels, about 1 GB each, once); every distribution installed must be pinned at
#     its version in constraints.txt;
#  4. smoke: from a folder outside the clone, with the hub offline: `sound-of-story --help`, both
#     evaluate modules loaded by their installed paths and computing known values, and a tiny
#     `sound-of-story generate` that must write what the pipeline gives in process.
# Set-up, the venv and uv come from .ci/bootstrap.sh. SOS_KEEP_WORK=1 keeps the work folder.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
constraints="$repo/constraints.txt"
resolve_pythons=${SOS_RESOLVE_PYTHONS:-3.11 3.12 3.13}
smoke_pythons=${SOS_SMOKE_PYTHONS:-3.11 3.12 3.13}

log() { echo "[check-package] $*" >&2; }
seconds_since() { echo $(($(date +%s) - $1)); }

venv=$(bash "$repo/.ci/bootstrap.sh")
uv="$venv/bin/uv"
work=$(mktemp -d -t sos-check-package.XXXXXX)
if [ "${SOS_KEEP_WORK:-0}" = 1 ]; then log "work folder: $work"; else trap 'rm -rf "$work"' EXIT; fi

# The interpreter X.Y: on PATH (a pyenv shim that is not activated fails the probe), else under pyenv.
find_python() {
  local found
  if found=$("python$1" -c 'import sys; print(sys.executable)' 2>/dev/null); then
    echo "$found"
    return
  fi
  found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/"python$1" 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] && echo "$found"
}

# PyPI alone, as a user's pip sees it: no machine-wide pip configuration (caps, local indexes).
clean_pip_env=(env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null)

# --- 1. build ---------------------------------------------------------------------------
start=$(date +%s)
"$venv/bin/python" -m build --outdir "$work/dist" "$repo" > "$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; log "python -m build failed (log above)"; exit 1; }
wheel=$(ls "$work"/dist/sound_of_story-*.whl)
sdist=$(ls "$work"/dist/sound_of_story-*.tar.gz)
log "built $(basename "$sdist") and $(basename "$wheel") in $(seconds_since "$start") s"

# --- 2. resolve -------------------------------------------------------------------------
resolve() {  # resolve X.Y: the ranges, then the constraints; a summary of each on stderr
  local version=$1 out="$work/resolve-$1" python pip_cmd target_args=() mode
  mkdir -p "$out"
  if python=$(find_python "$version"); then
    # that Python's own pip (a recent one: --dry-run, --report, fast-deps), in a throwaway venv
    if ! { "$python" -m venv "$out/venv" && "$out/venv/bin/python" -m pip install -q -c "$constraints" pip; } >"$out/pip.log" 2>&1; then
      tail -n 15 "$out/pip.log" >&2
      log "Python $version: could not set up pip in a venv to resolve with (log above)"
      return 1
    fi
    pip_cmd=("$out/venv/bin/python" -m pip)
    mode="Python $("$python" -c 'import platform; print(platform.python_version())')"
  else
    pip_cmd=("$venv/bin/python" -m pip)
    target_args=(--python-version "$version")
    mode="--python-version $version (no interpreter here: markers evaluated as $("$venv/bin/python" -c 'import platform; print(platform.python_version())'))"
  fi
  local status=0
  for kind in ranges constraints; do
    local extra_args=()
    [ "$kind" = constraints ] && extra_args=(-c "$constraints")
    if "${clean_pip_env[@]}" "${pip_cmd[@]}" install --dry-run --ignore-installed --only-binary=:all: \
      --use-feature=fast-deps --disable-pip-version-check --quiet --report "$out/$kind.json" \
      "${target_args[@]}" "${extra_args[@]}" "$wheel[cluster,app,dev]" >"$out/$kind.log" 2>&1; then
      "$venv/bin/python" - "$out/$kind.json" "$constraints" "$kind" "$mode" <<'PY'
import json, re, sys
report, constraints, kind, mode = sys.argv[1:]
canonical = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pins = {}
for line in open(constraints):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, version = line.partition("==")
        pins[canonical(name)] = version
got = {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in json.load(open(report))["install"]}
got.pop("sound-of-story", None)
other = sorted(f"{n} {v}" for n, v in got.items() if pins.get(n) != v)
print(f"[check-package] {mode}, {kind}: resolves, {len(got)} distributions, torch {got.get('torch')}; "
      f"not as pinned: {', '.join(other) or 'none'}", file=sys.stderr)
PY
    else
      grep -v "lazily downloaded wheels" "$out/$kind.log" | tail -n 15 >&2
      log "$mode, $kind: does NOT resolve (log above)"
      status=1
    fi
  done
  return $status
}

if [ -n "${resolve_pythons// /}" ]; then
  start=$(date +%s)
  pids=()
  for version in $resolve_pythons; do
    resolve "$version" 2>"$work/resolve-$version.err" &
    pids+=($!)
  done
  failed=0
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed=1
  done
  for version in $resolve_pythons; do cat "$work/resolve-$version.err" >&2; done
  [ "$failed" = 0 ] || { log "dependency resolution failed (above)"; exit 1; }
  log "resolution checked for Python $resolve_pythons in $(seconds_since "$start") s"
fi

# --- 3. install and 4. smoke, per Python --------------------------------------------------
smoked=() skipped=()
for version in $smoke_pythons; do
  start=$(date +%s)
  if ! python=$(find_python "$version"); then
    log "SKIPPED Python $version: no interpreter here to install the wheel into"
    skipped+=("$version")
    continue
  fi
  target="$work/wheel-venv-$version"
  "$uv" venv -q --python "$python" "$target" >&2
  # Only the wheel's own dependencies (no extras), each at the version the suite runs on.
  "$uv" pip install -q --python "$target/bin/python" "$wheel" -c "$constraints" >&2
  "$target/bin/python" "$repo/.ci/compare_constraints.py" "$constraints" --ignore sound-of-story >&2 \
    || { log "Python $version: the wheel installed distributions that constraints.txt does not pin (above)"; exit 1; }
  "$uv" pip check -q --python "$target/bin/python" >&2 \
    || { log "Python $version: the installed distributions' requirements conflict (above)"; exit 1; }
  log "Python $version: wheel installed into $target in $(seconds_since "$start") s"

  start=$(date +%s)
  smoke="$work/smoke-$version"
  mkdir -p "$smoke"
  cp "$repo/.ci/smoke_installed.py" "$smoke/"
  # -I: neither the clone, PYTHONPATH nor the user's site-packages can supply sound_of_story
  (cd "$smoke" && env -u PYTHONPATH HF_HUB_OFFLINE=1 HF_HOME="$smoke/hf-home" TQDM_DISABLE=1 \
    "$target/bin/python" -I smoke_installed.py "$target/bin/sound-of-story") >&2
  log "Python $version: smoke check passed in $(seconds_since "$start") s"
  smoked+=("$version")
done
[ ${#smoked[@]} -gt 0 ] || { log "the wheel was installed on no Python at all"; exit 1; }
resolved=${resolve_pythons// /}
log "OK: sdist and wheel build${resolved:+; resolution for Python $resolve_pythons}; the wheel installs and runs on Python ${smoked[*]}${skipped[*]:+ (SKIPPED, no interpreter: ${skipped[*]})}"
