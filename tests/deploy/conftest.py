import json
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
