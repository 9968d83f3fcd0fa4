#!/usr/bin/env bash
# Print the path of a Python 3.12 interpreter (the Lambda runtime's version), or fail with a hint.
# Order: $PYTHON312 if set, pyenv's 3.12.x (installed but maybe not active), python3.12 on PATH.
set -u
candidates=()
[ -n "${PYTHON312:-}" ] && candidates+=("$PYTHON312")
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root 2>/dev/null)
  for p in "$root"/versions/3.12*/bin/python3.12; do [ -x "$p" ] && candidates+=("$p"); done
fi
command -v python3.12 >/dev/null 2>&1 && candidates+=("$(command -v python3.12)")
for c in "${candidates[@]}"; do
  if "$c" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then
    echo "$c"; exit 0
  fi
done
echo "error: no Python 3.12 found (the AWS Lambda runtime this project targets)." >&2
echo "       install one (e.g. 'pyenv install 3.12' or your OS package) or set PYTHON312=/path/to/python3.12" >&2
exit 1
