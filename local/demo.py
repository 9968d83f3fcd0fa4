"""``make demo``: the schema-change incident of the background articles, on one laptop.

Embedded AWS (moto) with the packaged stack, the event-source-mapping emulator, a fake
Slack webhook and a fake CRM. By default on the Kinesis source, as serverless.yml ships
(the table's changes bridged into the Kinesis stream, each consumer on its enhanced fan-out
consumer); ``--source dynamodb`` tells it on the table's DynamoDB stream. The story:

1. a few hundred signups (v1 items, ``fullname``): all three consumers keep up;
2. a producer switches to ``firstname``/``lastname`` while the consumers still run the v1
   code (``USER_SCHEMA_MODE=legacy``): search-indexer (dlq-capture) captures and keeps
   indexing, slack-notifier (soft-fail) logs and moves on, crm-sync (hard-fail) blocks and
   its iterator age climbs;
3. the fix is deployed (``USER_SCHEMA_MODE=compat``, a fresh cold start): crm-sync catches
   up by itself; ``reprocess.py --consumer search-indexer`` drains the failure queue;
4. every promise is checked; the exit status is non-zero if any check fails.

Writes are single-threaded (moto hands out duplicate sequence numbers under concurrent
writers). Function logs (JSON, what CloudWatch would get) go to ``.local-state/functions.log``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
FIRST = ["Ada", "Grace", "Alan", "Katherine", "Edsger", "Barbara", "Donald", "Margaret", "Linus", "Radia",
         "Ken", "Frances", "John", "Hedy", "Tim", "Sophie", "Dennis", "Annie", "Claude", "Jean"]
LAST = ["Lovelace", "Hopper", "Turing", "Johnson", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Torvalds",
        "Perlman", "Thompson", "Allen", "Backus", "Lamarr", "Wilson", "Ritchie", "Easley", "Shannon",
        "Sammet", "Bartik"]
CONSUMER_NAMES = ("search-indexer", "slack-notifier", "crm-sync")


@dataclass
class User:
    uid: str
    first: str
    last: str
    v2: bool
    phase: str

    @property
    def email(self) -> str:
        return f"{self.first}.{self.last}.{self.uid}@example.com".lower()

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    def item(self) -> dict:
        item: dict[str, Any] = {"user_id": {"S": self.uid}, "email": {"S": self.email},
                                "plan": {"S": ["free", "pro", "team"][int(self.uid[1:]) % 3]},
                                "created_at": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        if self.v2:
            item["firstname"], item["lastname"] = {"S": self.first}, {"S": self.last}
        else:
            item["fullname"] = {"S": self.name}
        return item


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DemoSettings:
    v1_users: int = 300
    bug_users: int = 60
    after_fix_users: int = 20
    chunk: int = 50
    watch_blocked_s: float = 3.0
    retry_backoff_s: float = 0.2
    state_dir: Path = field(default_factory=lambda: ROOT / ".local-state")
    template: str | None = None
    source: str = "kinesis"  # which package the template is: kinesis or dynamodb (checked against it)


class Demo:
    def __init__(self, settings: DemoSettings, out: TextIO):
        self.s = settings
        self.out = out
        self.users: list[User] = []
        self.t0 = time.monotonic()

    # ---- output -----------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, n: int, title: str) -> None:
        self.say(f"\n[{time.monotonic() - self.t0:5.1f}s] {n}. {title}")

    # ---- pieces -----------------------------------------------------------------------
    def write_users(self, n: int, *, v2: bool, phase: str) -> list[User]:
        import boto3

        ddb = boto3.client("dynamodb")
        new = []
        for _ in range(n):  # one writer thread, on purpose
            i = len(self.users) + 1
            u = User(f"u{i:04d}", FIRST[i % len(FIRST)], LAST[(i * 7 + i // len(FIRST)) % len(LAST)], v2, phase)
            ddb.put_item(TableName=self.table, Item=u.item())
            self.users.append(u)
            new.append(u)
        return new

    def ages(self) -> str:
        return ", ".join(f"{self.short(fn)} {age:4.1f}s" for fn, age in self.em.iterator_ages().items())

    def short(self, function: str) -> str:
        return next((c for c in CONSUMER_NAMES if function.endswith(c)), function)

    def queue_depth(self, url: str) -> int:
        import boto3

        attrs = boto3.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def fn(self, consumer: str):
        return self.dep.function_for(consumer)

    # ---- the story --------------------------------------------------------------------
    def run(self) -> int:
        from local.aws import EmbeddedAws, deploy
        from local.esm import Emulator
        from local.fakes import FakeCRM, FakeSlack
        from local.functions import FunctionRuntime
        from local.template import TemplateError, load_template

        state = self.s.state_dir
        state.mkdir(parents=True, exist_ok=True)
        # One index per run: several people (and test runs) share this working tree, and a
        # second demo must not delete the index under a running one.
        search_db = state / f"search-demo-{os.getpid()}.sqlite3"
        for old in state.glob("search-demo-*.sqlite3*"):
            pid = old.name.split("-")[2].split(".")[0]
            if pid.isdigit() and not _alive(int(pid)):
                old.unlink(missing_ok=True)
        template = load_template(self.s.template)  # fails clearly when `make package` was not run

        with EmbeddedAws() as aws, FakeSlack() as slack, FakeCRM() as crm:
            self.aws, self.slack, self.crm = aws, slack, crm
            self.say(f"Embedded AWS (moto) at {aws.url}; fake Slack webhook {slack.url}; fake CRM {crm.url}")
            self.overrides = {"SEARCH_URL": f"sqlite:///{search_db}", "SLACK_WEBHOOK_URL": slack.webhook_url,
                              "CRM_BASE_URL": crm.url, "CRM_TOKEN": crm.token}
            self.dep = deploy(template, overrides=self.overrides)
            self.table = self.fn("crm-sync").environment.get("USERS_TABLE") or self.dep.table_name
            n_res = len(self.dep.resources)
            self.say(f"Stack {self.dep.stack_name}: {n_res} resources from the packaged template; "
                     f"{len(self.dep.mappings)} event-source mappings emulated (settings from the same template)")
            if self.dep.source != self.s.source:
                raise TemplateError(f"--source {self.s.source}, but the template's mappings read the {self.dep.source} "
                                    "source: pass the template packaged for it")
            if self.dep.source == "kinesis":
                (stream,) = {m.stream_arn for m in self.dep.mappings}
                self.say(f"Source: Kinesis Data Streams for DynamoDB, {stream.rsplit('/', 1)[1]}; each consumer reads "
                         "through its own enhanced fan-out consumer; the table's changes are copied into the stream "
                         "by local.bridge (moto does not publish them)")
            else:
                self.say("Source: the users table's DynamoDB stream, read by every mapping (--source dynamodb)")
            for m in self.dep.mappings:
                self.say(f"  {self.short(m.function):15} batch {m.batch_size}, {m.starting_position}, "
                         f"retries {m.max_retry_attempts}, bisect {m.bisect_on_error}, "
                         f"partial-batch {m.report_batch_item_failures}"
                         + (", filter " + json.dumps([json.loads(f['Pattern']) for f in m.filter_criteria['Filters']])
                            if m.filter_criteria else ""))
            runtimes = {name: FunctionRuntime(cfg) for name, cfg in self.dep.functions.items()}
            log_line = lambda msg: print(f"[esm] {msg}", flush=True)  # noqa: E731  (to functions.log)
            self.em = Emulator(self.dep.mappings, runtimes, bridges=self.dep.bridges(),
                               retry_backoff_s=self.s.retry_backoff_s,
                               max_backoff_s=1.0, log=log_line,
                               state_path=os.environ.get("LOCAL_ESM_STATE") or state / "esm.json")
            self.stream_fns = [self.fn(c).name for c in CONSUMER_NAMES]
            # The deployed consumer code is the v1 code: the switch stands in for it.
            for name in self.stream_fns:
                self.em.redeploy(name, {"USER_SCHEMA_MODE": "legacy"})
            self.phase_signups()
            self.phase_schema_change()
            self.incident_checks = self.page_during_incident()
            self.phase_fix()
            self.crm_missing = self.crm_missing_contacts()  # the stream path's work, before the rewind redoes it
            after_fix = self.page_after_fix()  # the page after the fix and the reprocess, before the rebuilds
            self.phase_backfill_and_rewind(state / f"search-demo-{os.getpid()}-rebuilt.sqlite3")
            checks = self.verify() + self.incident_checks + after_fix
            self.table_out(checks)
        ok = all(c.ok for c in checks)
        self.say(f"\n{'ALL CHECKS PASSED' if ok else 'SOME CHECKS FAILED'} in {time.monotonic() - self.t0:.1f}s "
                 f"(function logs: {state / 'functions.log'}; mapping state: {self.em.state_path})")
        return 0 if ok else 1

    def phase_signups(self) -> None:
        self.step(1, f"{self.s.v1_users} signups with the v1 schema (fullname)")
        left = self.s.v1_users
        while left > 0:
            batch = self.write_users(min(self.s.chunk, left), v2=False, phase="v1")
            left -= len(batch)
            report = self.em.run_until_idle()
            self.say(f"   {len(self.users):4d} users written; all consumers caught up: {report.ok} "
                     f"(iterator age: {self.ages()})")

    def phase_schema_change(self) -> None:
        self.step(2, f"the producer switches to firstname/lastname; {self.s.bug_users} signups; "
                     "consumers still run the v1 code")
        self.write_users(self.s.bug_users, v2=True, phase="bug")
        report = self.em.run_until_idle(stall_after=3)
        si, sn, cs = self.stream_fns
        failures_url = self.fn("search-indexer").environment["FAILURE_QUEUE_URL"]
        self.say(f"   search-indexer (dlq-capture): {self.queue_depth(failures_url)} records captured to its "
                 f"failure queue, the rest indexed; caught up: {si in report.caught_up}")
        posted = len(self.slack.messages)
        self.say(f"   slack-notifier (soft-fail): logged and skipped the failures; {posted} of "
                 f"{len(self.users)} signups posted; caught up: {sn in report.caught_up}")
        self.say(f"   crm-sync (hard-fail): blocked: {cs in report.stalled}; last error: "
                 f"{self.em.mapping(cs).last_error}")
        end = time.monotonic() + self.s.watch_blocked_s
        while time.monotonic() < end:
            self.em.step()
            time.sleep(0.25)
            if int((end - time.monotonic()) * 4) % 4 == 0:
                self.say(f"   iterator age: {self.ages()}   <- crm-sync climbing, others at 0")
        self.blocked_age = self.em.mapping(cs).iterator_age_s()

    def phase_fix(self) -> None:
        self.step(3, "the fix is deployed (USER_SCHEMA_MODE=compat, fresh cold start)")
        for name in self.stream_fns:
            self.em.redeploy(name, {"USER_SCHEMA_MODE": "compat"})
        report = self.em.run_until_idle()
        self.say(f"   crm-sync caught up by itself: {report.ok} (iterator age: {self.ages()})")
        self.write_users(self.s.after_fix_users, v2=True, phase="fixed")
        report = self.em.run_until_idle()
        self.say(f"   {self.s.after_fix_users} more v2 signups after the fix: all consumers caught up: {report.ok}")
        self.say("   operator: python reprocess/reprocess.py --consumer search-indexer")
        self.reprocess = self.run_reprocess()
        self.say(f"   reprocess exit {self.reprocess['exit']}: " + ", ".join(
            f"{k} {self.reprocess.get(k)}" for k in ("taken", "succeeded", "still_failing", "parked")))

    def phase_backfill_and_rewind(self, rebuilt: Path) -> None:
        self.step(4, "beyond the failure queue: rebuild the index from the table, re-run the stream")
        self.rebuilt_url = f"sqlite:///{rebuilt}"
        self.say("   operator: python reprocess/reprocess.py backfill --consumer search-indexer --segments 4"
                 "   (into a new, empty index)")
        self.backfill = self.run_reprocess("backfill", "--consumer", "search-indexer", "--segments", "4",
                                           env={"SEARCH_URL": self.rebuilt_url})
        self.say(f"   backfill exit {self.backfill['exit']}: " + ", ".join(
            f"{k} {self.backfill.get(k)}" for k in ("read", "handled", "captured", "status")))
        self.say("   operator: python reprocess/reprocess.py rewind --consumer crm-sync --since 10m")
        self.stream_records = self.count_stream_records()
        self.rewind = self.run_reprocess("rewind", "--consumer", "crm-sync", "--since", "10m")
        self.say(f"   rewind exit {self.rewind['exit']}: " + ", ".join(
            f"{k} {self.rewind.get(k)}" for k in ("taken", "handled", "captured", "mode", "status"))
            + f" (the stream holds {self.stream_records} records)")

    def crm_missing_contacts(self) -> list[str]:
        missing = []
        for u in self.users:
            c = self.crm.by_email(u.email)
            if not c or c["properties"].get("firstname") != u.first or c["properties"].get("lastname") != u.last:
                missing.append(u.uid)
        return missing

    def count_stream_records(self) -> int:
        import boto3

        streams = boto3.client("dynamodbstreams")
        arn = boto3.client("dynamodb").describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        total = 0
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while it:
                page = streams.get_records(ShardIterator=it, Limit=1000)
                total += len(page["Records"])
                it = page.get("NextShardIterator") if page["Records"] else None
        return total

    def run_reprocess(self, *args: str, env: dict | None = None) -> dict:
        """reprocess.py as an operator runs it, with the reprocess function's settings."""
        full = dict(os.environ)
        full.update(self.dep.operator_env(self.aws.url))  # what `python -m local run` prints for another shell
        full.update(env or {})
        args = args or ("--consumer", "search-indexer", "--wait-seconds", "1")
        cmd = [sys.executable, str(ROOT / "reprocess" / "reprocess.py"), *args, "--json", "--no-progress"]
        proc = subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=180)
        print(proc.stderr, flush=True)  # its logs -> functions.log
        try:
            summary = json.loads(proc.stdout)
        except json.JSONDecodeError:
            summary = {"error": (proc.stdout + proc.stderr)[-500:]}
        summary["exit"] = proc.returncode
        return summary

    # ---- the operator page's API --------------------------------------------------------
    def api(self):
        """The operator API (``opsapi``) on this stack, as ``make api`` would serve it next to
        ``python -m local run``: Flask's test client in this process, jobs run locally."""
        if getattr(self, "_api", None) is None:
            from opsapi import create_app

            env = self.fn("api").environment
            app = create_app({"REPROCESS_FUNCTION_NAME": None, "LEDGER_TABLE": env.get("LEDGER_TABLE"),
                              "JOBS_BUCKET": env.get("JOBS_BUCKET"), "ESM_STATE_PATH": str(self.em.state_path),
                              "LEDGER_TTL_S": 0})
            self._api = app.test_client()
        return self._api

    def consumers_via_api(self) -> dict[str, dict]:
        self.em.write_state(force=True)
        resp = self.api().get("/consumers")
        return {c["name"]: c for c in resp.get_json()["consumers"]} if resp.status_code == 200 else {}

    def say_page(self, consumers: dict[str, dict]) -> None:
        for name in CONSUMER_NAMES:
            c = consumers.get(name) or {}
            status = c.get("status") or {}
            self.say(f"   page: {name:15} {str(status.get('badge')).upper():9} "
                     + ("; ".join(status.get("reasons") or []) or "no problems")[:150])

    def page_during_incident(self) -> list[Check]:
        """What GET /consumers (the page) says while the bug is live: the true counts from the
        failure ledger, the real error of the blocked consumer, the dropped count."""
        self.say("   the operator page (GET /consumers) during the incident:")
        c = self.consumers_via_api()
        self.say_page(c)
        bug = sum(1 for u in self.users if u.phase == "bug")
        si, sn, cs = (c.get(n) or {} for n in CONSUMER_NAMES)
        failures_url = self.fn("search-indexer").environment["FAILURE_QUEUE_URL"]
        in_queue = self.queue_depth(failures_url)
        blocking = cs.get("blocking") or {}
        return [
            Check("page: search-indexer degraded, the true count per error type",
                  (si.get("status") or {}).get("badge") == "degraded"
                  and (si.get("ledger") or {}).get("openByErrorType") == {"KeyError": bug} and in_queue == bug,
                  f"{(si.get('ledger') or {}).get('openByErrorType')} in the ledger, {in_queue} in the queue"),
            Check("page: crm-sync blocked, with its real KeyError",
                  (cs.get("status") or {}).get("badge") == "blocked"
                  and (blocking.get("errorType"), blocking.get("errorMessage")) == ("KeyError", "'fullname'"),
                  f"{blocking.get('errorType')}: {blocking.get('errorMessage')} on record "
                  f"{blocking.get('sequenceNumber')}, {blocking.get('attempts')} failed invocations"),
            Check("page: slack-notifier dropping, with its count",
                  (sn.get("status") or {}).get("badge") == "dropping" and (sn.get("drops") or {}).get("last3h") == bug,
                  f"dropped {(sn.get('drops') or {}).get('last3h')} of the {bug} signups under the bug"),
        ]

    def page_after_fix(self) -> list[Check]:
        self.say("   the operator page after the fix and the reprocess:")
        c = self.consumers_via_api()
        self.say_page(c)
        badges = {n: (c.get(n) or {}).get("status", {}).get("badge") for n in CONSUMER_NAMES}
        parked = {n: ((c.get(n) or {}).get("ledger") or {}).get("counts", {}).get("parked") for n in CONSUMER_NAMES}
        depths = {n: ((c.get(n) or {}).get("parking") or {}).get("visible") for n in CONSUMER_NAMES}
        worker_parked = self.reprocess.get("parked") or 0
        return [
            Check("page: all three OK after the fix and the reprocess", set(badges.values()) == {"ok"},
                  ", ".join(f"{n} {b}" for n, b in badges.items())),
            Check("nothing parked except what the worker parked",
                  sum(v or 0 for v in depths.values()) == worker_parked and sum(v or 0 for v in parked.values())
                  == worker_parked, f"parking queues {depths}, ledger parked {parked}, worker parked {worker_parked}"),
        ]

    # ---- verification -----------------------------------------------------------------
    def verify(self) -> list[Check]:
        from consumers.sinks.sqlite_fts import SqliteSink

        self.step(5, "verify")
        checks: list[Check] = []
        index = self.fn("search-indexer").environment.get("SEARCH_INDEX") or "users"
        sink = SqliteSink.from_url(self.overrides["SEARCH_URL"], index)
        wrong = [u.uid for u in self.users
                 if (sink.get(u.uid) or {}).get("name") != u.name or (sink.get(u.uid) or {}).get("deleted")]
        checks.append(Check("search index: every user, right name", not wrong,
                            f"{len(self.users) - len(wrong)}/{len(self.users)}" + (f"; wrong: {wrong[:5]}" if wrong else "")))
        hits = sink.search("ada", limit=500)
        ada = [u for u in self.users if u.first == "Ada"]
        self.say(f'   $ python -m consumers.search_indexer search "ada" --url {self.overrides["SEARCH_URL"]}')
        for h in hits[:3]:
            self.say(f"     {h.get('user_id')}  {h.get('name'):20} {h.get('email', '')}")
        self.say(f"     ... ({len(hits)} matches)")
        checks.append(Check('search "ada" finds every Ada', {h["user_id"] for h in hits} == {u.uid for u in ada},
                            f"{len(hits)} hits, {len(ada)} Adas; e.g. " + ", ".join(h["name"] for h in hits[:3])))
        sink.close()

        missing = self.crm_missing
        checks.append(Check("CRM: every contact, right name", not missing,
                            f"{len(self.users) - len(missing)}/{len(self.users)}"
                            + (f"; missing: {missing[:5]}" if missing else "")))

        posted = [self._slack_uid(m) for m in self.slack.messages]
        dupes = sorted({p for p in posted if posted.count(p) > 1})
        lost = [u.uid for u in self.users if u.phase == "bug"]
        expected = {u.uid for u in self.users if u.phase != "bug"}
        checks.append(Check("Slack: one message per signup the stream path could post, none twice",
                            set(posted) == expected and not dupes,
                            f"{len(posted)} messages for {len(expected)} signups, {len(dupes)} duplicates"))
        checks.append(Check("Slack: bug-window signups lost by design (soft-fail)", set(posted).isdisjoint(lost),
                            f"{len(lost)} signups soft-failed under the bug were logged, not posted, not replayed"))

        import boto3

        from consumers.registry import get_consumer

        sqs = boto3.client("sqs")
        sqs_urls = {}
        for c in CONSUMER_NAMES:  # the queues by the registry's naming convention, as deployed
            env = self.fn(c).environment
            for kind, label in (("failures", "failure"), ("parking", "parking")):
                name = get_consumer(c).queue_name(kind, env)
                sqs_urls[f"{c} {label} queue"] = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        for m in self.em.mappings:
            if m.config.on_failure_arn and ":sqs:" in m.config.on_failure_arn:
                name = m.config.on_failure_arn.rsplit(":", 1)[1]
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                sqs_urls[f"{self.short(m.config.function)} on-failure destination"] = url
        depths = {k: self.queue_depth(v) for k, v in sqs_urls.items()}
        for m in self.em.mappings:  # hard-fail: an S3 destination keeps the failed invocations
            if m.config.on_failure_arn and m.config.on_failure_arn.startswith("arn:aws:s3:::"):
                bucket = m.config.on_failure_arn.rsplit(":", 1)[1]
                objects = boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount", 0)
                depths[f"{self.short(m.config.function)} on-failure destination"] = objects
        checks.append(Check("failure, parking and on-failure queues empty", not any(depths.values()),
                            ", ".join(f"{k}: {v}" for k, v in depths.items() if v) or f"{len(depths)} queues, all empty"))
        checks.append(Check("reprocess.py exited 0", self.reprocess.get("exit") == 0,
                            f"drained {self.reprocess.get('succeeded')} of {len(lost)} captured"))
        rebuilt = SqliteSink.from_url(self.rebuilt_url, self.fn("search-indexer").environment.get("SEARCH_INDEX") or "users")
        wrong = [u.uid for u in self.users if (rebuilt.get(u.uid) or {}).get("name") != u.name]
        rebuilt.close()
        checks.append(Check("backfill rebuilt a new index from the table: every user, right name",
                            self.backfill.get("exit") == 0 and not wrong,
                            f"{len(self.users) - len(wrong)}/{len(self.users)} in the new index, exit "
                            f"{self.backfill.get('exit')}" + (f"; wrong: {wrong[:5]}" if wrong else "")))
        checks.append(Check("rewind re-ran crm-sync's last ten minutes of the stream",
                            self.rewind.get("exit") == 0 and self.rewind.get("handled") == self.stream_records,
                            f"{self.rewind.get('handled')} of {self.stream_records} stream records handled in "
                            f"{self.rewind.get('mode')} mode, exit {self.rewind.get('exit')}"))
        after = self.crm_missing_contacts()
        checks.append(Check("CRM after the rewind: every contact, right name", not after,
                            f"{len(self.users) - len(after)}/{len(self.users)}"
                            + (f" (the stream path had left {len(missing)} wrong or missing)" if missing else "")))
        checks.append(Check("crm-sync blocked while the bug was live (iterator age climbed)",
                            self.blocked_age > 0, f"iterator age reached {self.blocked_age:.1f}s"))
        ages = self.em.iterator_ages()
        checks.append(Check("every mapping caught up (iterator age 0)", not any(ages.values()),
                            ", ".join(f"{self.short(k)} {v:.1f}s" for k, v in ages.items())))
        return checks

    @staticmethod
    def _slack_uid(message: dict) -> str | None:
        m = re.search(r"user `([^`]+)`", json.dumps(message.get("blocks") or []))
        return m.group(1) if m else None

    def table_out(self, checks: list[Check]) -> None:
        self.say("")
        hdr = (f"{'consumer':15} {'policy':12} {'read':>5} {'filtered':>8} {'handled':>7} {'discarded':>9} "
               f"{'invokes':>7} {'failed':>6} {'age':>5}")
        self.say(hdr)
        self.say("-" * len(hdr))
        for m in self.em.mappings:
            c = m.counters
            policy = m.function.config.environment.get("FAILURE_POLICY", "?")
            self.say(f"{self.short(m.config.function):15} {policy:12} {c.read:5d} {c.filtered:8d} {c.succeeded:7d} "
                     f"{c.discarded:9d} {c.invocations:7d} {c.failed_invocations:6d} {m.iterator_age_s():4.1f}s")
        self.say("(handled = delivered and checkpointed; dlq-capture/soft-fail count failed records as handled:"
                 " captured to SQS or logged)")
        self.say("")
        width = max(len(c.name) for c in checks)
        for c in checks:
            self.say(f"  [{'PASS' if c.ok else 'FAIL'}] {c.name:{width}}  {c.detail}")
        self.say("\nSlack, honestly: slack-notifier is soft-fail (not critical, never post twice), so the signups"
                 " that failed while the bug was live were logged and dropped; the stream path does not"
                 " replay them and nothing captured them. Every other signup got exactly one message.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_demo(settings: DemoSettings | None = None, out: TextIO | None = None) -> int:
    """Run the demo; narrative to ``out`` (stdout), function logs to .local-state/functions.log."""
    settings = settings or DemoSettings()
    out = out or sys.stdout
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.state_dir / "functions.log", "a")  # noqa: SIM115  (shared tree: append)
    saved = sys.stdout
    sys.stdout = log  # structlog/EMF print to stdout, as on Lambda: keep them out of the narrative
    try:
        from streamkit import log as sk_log

        sk_log.configure()  # bound to the log file from now on
        return Demo(settings, out).run()
    finally:
        sys.stdout = saved
        from streamkit import log as sk_log

        sk_log.configure()  # structlog back on the real stdout before the file closes
        log.close()
