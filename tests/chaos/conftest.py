"""Say which scenarios run, so any run can be repeated."""


def pytest_report_header(config):
    from .test_chaos import BASE_SEED, SCENARIOS, replay_command

    return (f"chaos: {SCENARIOS} scenarios, seeds {BASE_SEED}..{BASE_SEED + SCENARIOS - 1} "
            f"(one alone: {replay_command(BASE_SEED).replace(str(BASE_SEED), '<seed>', 1)})")
