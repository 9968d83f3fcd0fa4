"""``python -m local demo [--source kinesis|dynamodb]`` | ``python -m local run [--until-idle] [--endpoint URL]``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("kinesis", "dynamodb")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run_demo
    from .template import ensure_packaged

    settings = DemoSettings(template=args.template or str(ensure_packaged(ROOT, args.source)), source=args.source)
    if args.state_dir:
        settings.state_dir = Path(args.state_dir).resolve()
    if args.users:
        settings.v1_users = args.users
    return run_demo(settings)


def _cmd_run(args: argparse.Namespace) -> int:
    """Run the mappings: on a fresh embedded AWS (default) or against a stack already deployed
    at ``--endpoint`` (e.g. another ``python -m local run`` or a moto server of yours)."""
    from .aws import EmbeddedAws, deploy, describe
    from .esm import Emulator
    from .functions import FunctionRuntime
    from .template import ensure_packaged, load_template

    template = load_template(args.template or ensure_packaged(ROOT, args.source))
    aws = slack = crm = None
    overrides: dict[str, str] = {}
    try:
        if not os.environ.get("SLACK_WEBHOOK_URL") or not os.environ.get("CRM_BASE_URL"):
            from .fakes import FakeCRM, FakeSlack

            slack, crm = FakeSlack(print_messages=True).start(), FakeCRM().start()
            print(f"fake Slack webhook: {slack.webhook_url}\nfake CRM: {crm.url} (token {crm.token})")
        overrides = {
            "SEARCH_URL": os.environ.get("SEARCH_URL") or f"sqlite:///{ROOT / '.local-state' / 'search.sqlite3'}",
            "SLACK_WEBHOOK_URL": os.environ.get("SLACK_WEBHOOK_URL") or slack.webhook_url,
            "CRM_BASE_URL": os.environ.get("CRM_BASE_URL") or crm.url,
            "CRM_TOKEN": os.environ.get("CRM_TOKEN") or crm.token,
        }
        if args.endpoint:
            from .aws import AWS_ENV

            for k, v in AWS_ENV.items():
                os.environ.setdefault(k, v)
            os.environ["AWS_ENDPOINT_URL"] = args.endpoint
            dep = describe(template, overrides=overrides)
        else:
            aws = EmbeddedAws(port=args.port).start()
            dep = deploy(template, overrides=overrides)
            import shlex

            print(f"embedded AWS: export AWS_ENDPOINT_URL={aws.url}  (stack {dep.stack_name}, "
                  f"users table {dep.table_name})")
            print("another shell (reprocess.py: drain, backfill, rewind; the reprocess function's settings):\n"
                  "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in dep.operator_env(aws.url).items()))
        em = Emulator(dep.mappings, {n: FunctionRuntime(c) for n, c in dep.functions.items()},
                      bridges=dep.bridges(), retry_backoff_s=args.backoff,
                      log=lambda m: print(f"[esm] {m}", file=sys.stderr))
        print(f"emulating {len(em.mappings)} mappings on the {dep.source} source; state in {em.state_path}", flush=True)
        if args.until_idle:
            report = em.run_until_idle()
            for fn, age in em.iterator_ages().items():
                print(f"{fn}: iterator age {age:.1f}s{' (stalled)' if fn in report.stalled else ''}")
            return 0 if report.ok else 1
        print("polling; Ctrl-C to stop", flush=True)
        em.run_forever()
        return 0
    finally:
        for server in (slack, crm, aws):
            if server is not None:
                server.stop()


def main(argv: list[str] | None = None) -> int:
    from .template import TemplateError

    p = argparse.ArgumentParser(prog="python -m local", description="the local runtime: embedded AWS + mapping emulator")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the schema-change story end to end (make demo)")
    d.add_argument("--template", help="packaged template (default: the one packaged for --source)")
    d.add_argument("--source", choices=SOURCES, default="kinesis",
                   help="kinesis (default: Kinesis Data Streams for DynamoDB, as serverless.yml ships) or dynamodb "
                        "(the table's DynamoDB stream: artifacts/dynamodb-source/)")
    d.add_argument("--users", type=int, help="v1 signups in step 1 (default 300)")
    d.add_argument("--state-dir", default=os.environ.get("LOCAL_STATE_DIR"),
                   help="search index, function logs, mapping state (default .local-state/)")
    r = sub.add_parser("run", help="poll the stream and invoke the functions until Ctrl-C")
    r.add_argument("--until-idle", action="store_true", help="stop when every mapping is caught up or stuck")
    r.add_argument("--endpoint", help="use the stack already deployed at this AWS endpoint")
    r.add_argument("--port", type=int, help="port for the embedded AWS (default: a free one)")
    r.add_argument("--template", help="packaged template (default: the one packaged for --source)")
    r.add_argument("--source", choices=SOURCES, default="kinesis", help="kinesis (default) or dynamodb")
    r.add_argument("--backoff", type=float, default=0.5, help="first retry backoff in seconds (default 0.5)")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return _cmd_demo(args) if args.command == "demo" else _cmd_run(args)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0 if args.command == "run" else 130
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
