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
