#!/usr/bin/env bash
# Sets up everything marsbench needs in ./.venv, then runs the demo or the test suite.
#   bash scripts/bootstrap.sh demo    # synthetic data + marsbench-tiny through all services
#   bash scripts/bootstrap.sh test    # lint, type check, the full test suite (import contracts included)
# Idempotent: a second run reuses the environment and reinstalls only when the project's
# dependency files changed. PYTHON picks the interpreter (3.11 or newer), default python3.
set -euo pipefail

cd "$(dirname "$0")/.."
action="${1:-}"
case "$action" in
  demo|test) ;;
  *) echo "usage: bash scripts/bootstrap.sh demo|test" >&2; exit 64 ;;
esac

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "marsbench needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv ..."
  "$python" -m venv "$venv"
fi

# Reinstall only when what decides the environment changed.
stamp="$venv/.marsbench-install"
# The workspace's members, in dependency order (pyproject.toml's [tool.uv.workspace] lists the same).
members=(libs/wire libs/common clients/python services/encoder services/indexer services/evaluator
  training clients/cli)
want="$(cat pyproject.toml scripts/bootstrap.sh "${members[@]/%//pyproject.toml}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing dependencies into $venv (the first time takes a few minutes) ..."
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # PyTorch is pinned: these exact builds are the ones tested (and the ones on the CI machine).
  "$venv/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
  # Every member editable in one resolve, so their pins on each other are met by these checkouts;
  # then the root's test group (pip >= 25.1 reads PEP 735 dependency groups).
  editable=()
  for member in "${members[@]}"; do editable+=(-e "./$member"); done
  "$venv/bin/python" -m pip uninstall --quiet --yes marsbench 2>/dev/null || true  # the pre-workspace distribution
  "$venv/bin/python" -m pip install --quiet "${editable[@]}"
  "$venv/bin/python" -m pip install --quiet --group test
  echo "$want" > "$stamp"
fi

if [ "$action" = demo ]; then
  exec "$venv/bin/marsbench" demo
fi

# The search page's browser test (tests/ui) drives Debian's Chromium through its ChromeDriver.
if [ -z "${MARSBENCH_SKIP_BROWSER:-}" ] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver for the browser test (MARSBENCH_SKIP_BROWSER=1 skips it) ..."
  apt_get="apt-get"
  [ "$(id -u)" = 0 ] || apt_get="sudo apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $apt_get install -y -q chromium chromium-driver >/dev/null \
    || { $apt_get update -q >/dev/null && $apt_get install -y -q chromium chromium-driver >/dev/null; }
fi
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
# The type checker over every member's src/ (settings: the root pyproject's [tool.mypy]).
"$venv/bin/python" -m mypy
exec "$venv/bin/python" -m pytest
