# The README's first two commands. Both set up a fresh machine first (.ci/bootstrap.sh: Debian's
# ffmpeg, espeak-ng and Chromium, a virtual environment outside the clone keyed by constraints.txt
# and pyproject's dependency declarations, installed by uv at exactly the versions of constraints.txt).
SHELL := /bin/bash
DEMO_OUT ?= demo_output
PYTEST_ARGS ?=

.PHONY: demo test lint venv check-package

venv:
	@bash .ci/bootstrap.sh

demo:
	@set -e; venv=$$(bash .ci/bootstrap.sh); \
	HF_HUB_OFFLINE=1 "$$venv/bin/sound-of-story" demo --out "$(DEMO_OUT)"

# Tests never reach a hub and never see an earlier cache: offline, with a private HF_HOME.
test:
	@set -e; venv=$$(bash .ci/bootstrap.sh); \
	export HF_HUB_OFFLINE=1 HF_HOME=$$(mktemp -d -t sos-hf-home.XXXXXX); \
	trap 'rm -rf "$$HF_HOME"' EXIT; \
	"$$venv/bin/python" -m pytest $(PYTEST_ARGS)

# Builds the sdist and wheel, checks dependency resolution for Python 3.11-3.13, installs the wheel
# into a fresh venv per Python (3.11-3.13) with constraints.txt and smoke-checks it from outside the
# clone. CI runs it last.
check-package:
	@bash .ci/check_package.sh

# ruff (pinned in the dev extra; configured in pyproject.toml, line length 119). CI runs it first.
lint:
	@set -e; venv=$$(bash .ci/bootstrap.sh); \
	"$$venv/bin/ruff" check . && "$$venv/bin/ruff" format --check .
