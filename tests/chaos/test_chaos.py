"""The randomized whole-pipeline fault suite (issue 14): seeded scenarios, invariants at the end.

``make test`` runs ``CHAOS_SCENARIOS`` (default 100) scenarios from ``CHAOS_SEED`` (default
1, so CI runs the same ones every time); ``make chaos`` runs more from a fresh seed. A
failing scenario prints its seed and the one-line command that replays it alone.
"""
from __future__ import annotations

import os

import pytest

from .scenario import generate

SCENARIOS = int(os.environ.get("CHAOS_SCENARIOS") or 100)
BASE_SEED = int(os.environ.get("CHAOS_SEED") or 1)


def replay_command(seed: int) -> str:
    return f"CHAOS_SEED={seed} CHAOS_SCENARIOS=1 .venv/bin/python -m pytest tests/chaos -q"


@pytest.fixture(scope="module")
def world(embedded_aws, tmp_path_factory):
    from .pipeline import World

    saved = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = embedded_aws.url
    try:
        with World(embedded_aws.url, tmp_path_factory.mktemp("chaos")) as w:
            yield w
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved


@pytest.mark.parametrize("seed", range(BASE_SEED, BASE_SEED + SCENARIOS))
def test_scenario(world, seed):
    scenario = generate(seed)
    run = world.run(scenario)
    if run.violations:
        report = "\n".join(f"  - {v}" for v in run.violations)
        pytest.fail(
            f"chaos scenario {seed} broke {len(run.violations)} invariant(s):\n{report}\n"
            f"replay: {replay_command(seed)}\n{scenario.describe()}\nstats: {run.stats}\n"
            f"drains: {run.drains}",
            pytrace=False,
        )

