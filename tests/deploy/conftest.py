import json
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
TEMPLATE = ARTIFACTS / "cloudformation-template-update-stack.json"


@pytest.fixture(scope="session")
def template() -> dict:
    if not TEMPLATE.exists():
        pytest.fail(f"{TEMPLATE} is missing: run `make package` (make test does it first)")
    return json.loads(TEMPLATE.read_text())


@pytest.fixture(scope="session")
def zip_names() -> list[str]:
    zips = sorted(ARTIFACTS.glob("*.zip"))
    if not zips:
        pytest.fail("no deployment zip in artifacts/: run `make package`")
    with zipfile.ZipFile(zips[0]) as z:
        return z.namelist()


EXISTING_TABLE_TEMPLATE = ARTIFACTS / "existing-table" / "cloudformation-template-update-stack.json"
EXAMPLE_STREAM = "arn:aws:dynamodb:us-east-1:111122223333:table/users/stream/2024-01-01T00:00:00.000"  # as in the Makefile


@pytest.fixture(scope="session")
def existing_table_template() -> dict:
    """The package made with --param usersStreamArn=EXAMPLE_STREAM (a team's own table)."""
    if not EXISTING_TABLE_TEMPLATE.exists():
        pytest.fail(f"{EXISTING_TABLE_TEMPLATE} is missing: run `make package` (make test does it first)")
    return json.loads(EXISTING_TABLE_TEMPLATE.read_text())


DYNAMODB_TEMPLATE = ARTIFACTS / "dynamodb-source" / "cloudformation-template-update-stack.json"


@pytest.fixture(scope="session")
def dynamodb_template() -> dict:
    """The package made with --param streamSource=dynamodb and its reader budget acknowledged."""
    if not DYNAMODB_TEMPLATE.exists():
        pytest.fail(f"{DYNAMODB_TEMPLATE} is missing: run `make package` (make test does it first)")
    return json.loads(DYNAMODB_TEMPLATE.read_text())


@pytest.fixture(params=["kinesis", "dynamodb"])
def any_template(request, template, dynamodb_template) -> tuple[str, dict]:
    """(source, template) for each stream source: what holds on both."""
    return request.param, template if request.param == "kinesis" else dynamodb_template


def package_variant(out_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """A real, offline ``serverless package`` into ``out_dir`` with more options (``--param``,
    ``--config``), through scripts/package.sh under the same lock as ``make package``."""
    import os
    import sys

    env = {**os.environ, "PYTHON_BIN": os.environ.get("PYTHON_BIN") or sys.executable}
    return subprocess.run([str(ROOT / "scripts" / "package.sh"), "--variant", str(out_dir), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
