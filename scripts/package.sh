#!/usr/bin/env bash
# Offline `serverless package` (osls) into artifacts/: no AWS credentials, no AWS calls; only the
# npm and PyPI registries are used (by `npm ci` and serverless-python-requirements' pip).
#   artifacts/                  --stage dev (Kinesis source), the template tests/deploy and the local runtime read
#   artifacts/package-dev.log   the dev package's output (its warnings are tested)
#   artifacts/existing-table/   usersStreamArn set, productionStage and alarmEmail as on prod (the
#                               bring-your-own-table path; the table's name comes from the stream ARN)
#   artifacts/dynamodb-source/  streamSource=dynamodb, its reader budget acknowledged (`python -m local demo --source dynamodb`)
# Packaging itself runs the reader-budget check (plugins/stream-consumers/source.js); it runs
# again on what was written. Serialized with a lock and swapped in whole: several `make test`
# runs in one working tree would otherwise share the framework's .serverless/ scratch directory
# and leave a half-written zip. Usage: PYTHON_BIN=/path/to/python3.12 scripts/package.sh
#
# One more package, for a test: scripts/package.sh --variant DIR [serverless options...]
# packages into DIR under the same lock (nothing else is touched) and exits with serverless'
# status, e.g. --param="streamSource=dynamodb", --stage prod or --config serverless.variant-x.yml.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON_BIN:-python3.12}
EXAMPLE_STREAM=arn:aws:dynamodb:us-east-1:111122223333:table/users/stream/2024-01-01T00:00:00.000

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "error: Node.js (20.19+) and npm are needed for 'serverless package'." >&2
  echo "       install them with your package manager (e.g. 'apt-get install nodejs npm') or from nodejs.org" >&2
  exit 1
fi
if [ ! -x node_modules/.bin/serverless ]; then
  echo "error: node_modules/.bin/serverless is missing: run 'make node_modules' (npm ci)" >&2
  exit 1
fi
"$PY" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 12))' 2>/dev/null || {
  echo "error: PYTHON_BIN=$PY is not a Python 3.12 (the Lambda runtime); set PYTHON_BIN" >&2; exit 1; }

exec 9<package.json
flock 9

sls() {
  env -u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL \
    AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline AWS_REGION=us-east-1 \
    PYTHON_BIN="$PY" node_modules/.bin/serverless "$@"
}

if [ "${1:-}" = "--variant" ]; then
  out=${2:?usage: scripts/package.sh --variant DIR [serverless options...]}
  shift 2
  sls package --package "$out" "$@"          # stage: dev unless the options say --stage
  exit $?
fi

next=$(mktemp -d artifacts.next.XXXXXX)
log=$(mktemp)
trap 'rm -rf "$next" "$log"' EXIT
sls package --package "$next" --stage dev 2>&1 | tee "$log"
cp "$log" "$next/package-dev.log"   # tests/deploy read its warnings
# A team's own table, packaged the way production is (productionStage: alarm email required,
# deletion and termination protection). The table's name comes from the stream ARN.
sls package --package "$next/existing-table" --stage dev --param="usersStreamArn=$EXAMPLE_STREAM" \
  --param="productionStage=true" --param="alarmEmail=oncall@example.com" >/dev/null
sls package --package "$next/dynamodb-source" --stage dev \
  --param="streamSource=dynamodb" --param="dynamodbStreamReadersAccepted=4" >/dev/null
"$PY" scripts/check_readers.py "$next/cloudformation-template-update-stack.json"
"$PY" scripts/check_readers.py --accept 4 "$next/dynamodb-source/cloudformation-template-update-stack.json" >/dev/null

old=$(mktemp -d artifacts.old.XXXXXX)
[ -d artifacts ] && mv artifacts "$old/"
mv "$next" artifacts
rm -rf "$old"
