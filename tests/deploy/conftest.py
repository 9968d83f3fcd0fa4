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


def function_resources(template: dict) -> dict[str, dict]:
    """{function short name (crm-sync, api, ...): its AWS::Lambda::Function Properties}"""
    out = {}
    for r in template["Resources"].values():
        if r["Type"] == "AWS::Lambda::Function":
            props = r["Properties"]
            out[props["FunctionName"].split("-dev-", 1)[1]] = props
    return out


@pytest.fixture(scope="session")
def function_zips(template) -> dict[str, Path]:
    """{function short name: its own deployment zip in artifacts/} (package.individually)."""
    out = {}
    for name, props in function_resources(template).items():
        zip_path = ARTIFACTS / props["Code"]["S3Key"].rsplit("/", 1)[1]
        if not zip_path.exists():
            pytest.fail(f"{zip_path.name} (the Code of {name}) is not in artifacts/: run `make package`")
        out[name] = zip_path
    return out


@pytest.fixture(scope="session")
def zip_contents(function_zips) -> dict[str, set[str]]:
    """{function short name: the file names in its zip}"""
    out = {}
    for name, path in function_zips.items():
        with zipfile.ZipFile(path) as z:
            out[name] = set(z.namelist())
    return out


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
