"""Seeded scenarios: table writes, a schema-change window, mapping settings and faults.

``generate(seed)`` is pure: the same seed gives the same scenario, so a failing seed replays.
Every fault is bounded (``times``), and the drain phase ends with fault-free runs, so a
correct pipeline always converges; what it converges to is checked by ``invariants``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from tests.awsfaults import AwsFault

CONSUMERS = ("search-indexer", "slack-notifier", "crm-sync")
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Radia", "Ken", "Hedy")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Perlman", "Thompson", "Lamarr")
PLANS = ("free", "pro", "team")

@dataclass(frozen=True)
class Op:
    """One write to the users table, done before emulator round ``round``."""

    index: int
    round: int
    kind: str  # insert | modify | remove
    user: str
    item: dict | None  # the whole new item (plain values), None for remove


@dataclass(frozen=True)
class HttpFault:
    """Armed on the fake before round ``round`` (stream phase) or before drain run ``round``."""

    phase: str
    round: int
    sink: str  # slack | crm
    kind: str  # 429 | 400 | 500 | 503 | 500-after | hang | hang-after | reset | reset-after | outage
    times: int = 1

    def describe(self) -> str:
        return f"{self.phase}:{self.sink} {self.kind} x{self.times} @{self.round}"


@dataclass(frozen=True)
class InvocationFault:
    """At the ``at_check``-th deadline check of invocation ``invocation`` of ``consumer``:
    ``deadline`` (time runs short), ``overrun`` (time runs out: Lambda times the invocation
    out), ``crash`` (the process dies), or ``lost-response`` (after it returns, Lambda never
    gets the answer and retries the batch)."""

    consumer: str
    invocation: int
    kind: str
    at_check: int = 1

    def describe(self) -> str:
        return f"{self.consumer} #{self.invocation} {self.kind} at check {self.at_check}"


@dataclass
class Scenario:
    seed: int
    ops: list[Op]
    fix_round: int | None  # consumers run the v1 code (USER_SCHEMA_MODE=legacy) until then
    mappings: dict[str, dict]  # consumer -> MappingConfig overrides
    aws_faults: list[AwsFault] = field(default_factory=list)
    http_faults: list[HttpFault] = field(default_factory=list)
    invocation_faults: list[InvocationFault] = field(default_factory=list)
    clock_jumps: dict[int, float] = field(default_factory=dict)  # round -> seconds
    drain_order: tuple[str, ...] = CONSUMERS
    classes: set[str] = field(default_factory=set)
    shards: int = 1  # of the Kinesis changes stream (the kinesis source)
    # What Kinesis Data Streams for DynamoDB may do (local.bridge): every Nth change written
    # twice, every Nth change written behind the newer ones (0: off)
    kinesis_duplicate_every: int = 0
    kinesis_late_every: int = 0

    @property
    def last_round(self) -> int:
        rounds = [o.round for o in self.ops] + [f.round for f in self.http_faults if f.phase == "stream"]
        rounds += list(self.clock_jumps) + ([self.fix_round] if self.fix_round is not None else [])
        return max(rounds, default=0)

    def describe(self) -> str:
        lines = [f"seed {self.seed}: {len(self.ops)} writes, {self.shards} shard(s), fix at round {self.fix_round}, "
                 f"classes {sorted(self.classes)}, drain order {list(self.drain_order)}"]
        lines += [f"  mapping {c}: {m}" for c, m in self.mappings.items() if m]
        lines += [f"  {o.round:>3} {o.kind} {o.user} {_short(o.item)}" for o in self.ops]
        lines += [f"  aws {f.describe()}" for f in self.aws_faults]
        lines += [f"  http {f.describe()}" for f in self.http_faults]
        lines += [f"  invocation {f.describe()}" for f in self.invocation_faults]
        lines += [f"  clock +{s:.0f}s @{r}" for r, s in sorted(self.clock_jumps.items())]
        if self.kinesis_duplicate_every or self.kinesis_late_every:
            lines.append(f"  kinesis: every {self.kinesis_duplicate_every or '-'}th change twice, "
                         f"every {self.kinesis_late_every or '-'}th late")
        return "\n".join(lines)


BIG_BIO = 270_000  # characters: an envelope over the failure queue's 256 KiB goes to S3 (claim check)


def _short(item: dict | None) -> dict | None:
    return None if item is None else {k: (f"<{len(v)} chars>" if isinstance(v, str) and len(v) > 80 else v)
                                      for k, v in item.items()}


def _item(rng: random.Random, uid: str, index: int, v2: bool, plan: str, big: bool = False) -> dict:
    first, last = rng.choice(FIRST), f"{rng.choice(LAST)}{index}"  # unique per write: Slack posts map back
    item = {"user_id": uid, "email": f"{uid}@example.com", "plan": plan}
    if big:
        item["bio"] = "b" * BIG_BIO
    if v2:
        item.update(firstname=first, lastname=last)
    else:
        item["fullname"] = f"{first} {last}"
    return item


def _ops(rng: random.Random, v2_share: float, big_share: float = 0.0) -> list[Op]:
    users = [f"u{i}" for i in range(rng.randint(2, 5))]
    present: dict[str, dict] = {}
    ops: list[Op] = []
    rnd = 0
    for index in range(rng.randint(3, 7)):
        uid = rng.choice(users)
        rnd += rng.choice((0, 0, 0, 1, 1))
        if uid not in present:
            item = _item(rng, uid, index, rng.random() < v2_share, rng.choice(PLANS), rng.random() < big_share)
            present[uid] = item
            ops.append(Op(index, rnd, "insert", uid, item))
        elif rng.random() < 0.25:
            del present[uid]
            ops.append(Op(index, rnd, "remove", uid, None))
        else:
            v2 = "firstname" in present[uid] or rng.random() < v2_share
            item = _item(rng, uid, index, v2, rng.choice(PLANS), rng.random() < big_share)
            present[uid] = item
            ops.append(Op(index, rnd, "modify", uid, item))
    return ops


STREAM_AWS = [
    # (class, service, operation, target, kinds)
    ("idempotency", "dynamodb", "PutItem", "idempotency", ("throttle", "500", "denied", "connection", "crash")),
    ("idempotency", "dynamodb", "UpdateItem", "idempotency", ("throttle", "500", "denied", "connection", "crash")),
    ("idempotency", "dynamodb", "DeleteItem", "idempotency", ("throttle", "500", "connection")),
    ("capture", "sqs", "SendMessageBatch", "search-indexer-failures", ("throttle", "500", "denied", "connection", "crash")),
    ("claim-check", "s3", "PutObject", "", ("throttle", "500", "denied", "connection", "crash")),
]
DRAIN_AWS = [
    ("drain-stream-read", "dynamodb-streams", "GetShardIterator", "", ("throttle", "500", "denied", "connection")),
    ("drain-stream-read", "dynamodb-streams", "GetRecords", "", ("throttle", "500", "denied", "connection")),
    ("drain-table-read", "dynamodb", "GetItem", "users", ("throttle", "500", "denied", "connection")),
    ("drain-claim-check", "s3", "GetObject", "", ("throttle", "500", "denied", "connection")),
    ("idempotency", "dynamodb", "PutItem", "idempotency", ("throttle", "500", "denied")),
    ("idempotency", "dynamodb", "UpdateItem", "idempotency", ("500", "denied", "crash")),
    ("drain-sqs", "sqs", "ReceiveMessage", "", ("throttle", "500", "denied", "connection")),
    ("drain-sqs", "sqs", "DeleteMessageBatch", "", ("throttle", "500", "denied", "connection")),
    ("drain-sqs", "sqs", "SendMessageBatch", "failures", ("throttle", "500", "denied", "connection")),
    ("drain-sqs", "sqs", "ChangeMessageVisibilityBatch", "", ("500", "denied")),
    ("worker-crash", "sqs", "DeleteMessageBatch", "", ("crash",)),
    ("worker-crash", "sqs", "SendMessageBatch", "failures", ("crash",)),
]
SLACK_KINDS = ("429", "400", "500", "500-after", "hang", "hang-after", "reset", "reset-after")
CRM_KINDS = ("429", "503", "400", "hang", "reset", "reset-after")


def generate(seed: int) -> Scenario:
    """A scenario of one of three shapes: faults while the stream runs, faults while a backlog
    is drained (a schema-change window and small retry budgets guarantee one), or both."""
    rng = random.Random(seed)
    focus = rng.choice(("stream", "stream", "drain", "both"))
    backlog = focus != "stream"
    schema_window = backlog or rng.random() < 0.4
    big = rng.random() < 0.12  # some records too big for the failure queue: claim checks in S3
    ops = _ops(rng, v2_share=0.6 if schema_window else 0.3, big_share=0.4 if big else 0.0)
    last = max(o.round for o in ops)
    scenario = Scenario(
        seed=seed,
        ops=ops,
        fix_round=(rng.randint(last, last + 3) if backlog else rng.randint(1, last + 3)) if schema_window else None,
        mappings={c: {} for c in CONSUMERS},
        drain_order=tuple(rng.sample(CONSUMERS, 3)),
        classes={f"focus-{focus}"},
        shards=2 if rng.random() < 0.2 else 1,
    )
    if schema_window:
        scenario.classes.add("schema-window")
    if big:
        scenario.classes.add("claim-checks")
    for c in CONSUMERS:  # smaller batches and retry budgets than the template: more paths per write
        m = scenario.mappings[c]
        if rng.random() < 0.7:
            m["batch_size"] = rng.randint(1, 5)
        if rng.random() < (0.9 if backlog else 0.5):
            m["max_retry_attempts"] = rng.randint(0, 2 if backlog else 3)  # hard-fail: on-failure metadata
        if rng.random() < 0.3:
            m["bisect_on_error"] = not bool(rng.getrandbits(1))
        m["max_batching_window_s"] = 0 if rng.random() < 0.5 else rng.choice((1, 5))
    if focus == "stream" and rng.random() < 0.08:
        scenario.classes.add("no-faults")
        return scenario
    _kinesis_delivery(seed, scenario)

    if focus != "drain":
        for _ in range(rng.randint(1, 4)):
            _stream_fault(rng, scenario, last)
    if focus != "stream":
        if rng.random() < 0.5:  # Slack's backlog comes only from failed invocations
            scenario.invocation_faults.append(InvocationFault("slack-notifier", rng.randint(1, 2),
                                                              rng.choice(("crash", "lost-response"))))
            scenario.mappings["slack-notifier"]["max_retry_attempts"] = 0
        choices = DRAIN_AWS
        if rng.random() < 0.6:  # the worker's own reads and deletes, past botocore's retries
            cls, service, op = rng.choice((("drain-stream-read", "dynamodb-streams", "GetShardIterator"),
                                           ("drain-stream-read", "dynamodb-streams", "GetRecords"),
                                           ("drain-sqs", "sqs", "ReceiveMessage"),
                                           ("drain-sqs", "sqs", "DeleteMessageBatch")))
            kind = rng.choice(("throttle", "500", "denied", "connection"))
            scenario.aws_faults.append(AwsFault("drain", service, op, kind, after=rng.choice((0, 0, 1)),
                                                times=1 if kind == "denied" else rng.choice((4, 8, 12))))
            scenario.classes.add(cls)
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.3:
                sink = rng.choice(("slack", "crm"))
                kind = rng.choice(SLACK_KINDS if sink == "slack" else CRM_KINDS)
                scenario.http_faults.append(HttpFault("drain", rng.randint(0, 1), sink, kind, rng.randint(1, 3)))
                scenario.classes.add(f"drain-http-{sink}")
                continue
            cls = rng.choice(sorted({d[0] for d in choices}))  # each class as likely, whatever its size
            _, service, op, target, kinds = rng.choice([d for d in choices if d[0] == cls])
            kind = rng.choice(kinds)
            times = 1 if kind == "crash" else rng.choice((1, 2, 4, 5, 8, 12))
            scenario.aws_faults.append(AwsFault("drain", service, op, kind, times=times,
                                                after=rng.choice((0, 0, 1, 2)), target=target))
            scenario.classes.add(cls)
    if rng.random() < 0.15:  # a sink down for a while (drawn last: the other draws of a seed stay as they were)
        sink = rng.choice(("slack", "crm"))
        scenario.http_faults.append(HttpFault("stream", rng.randint(0, last), sink, "outage", rng.randint(8, 20)))
        scenario.classes.add(f"outage-{sink}")
    return scenario


def _kinesis_delivery(seed: int, scenario: Scenario) -> None:
    """Duplicates and late changes on the Kinesis stream, drawn from a generator of their own
    (the other draws of a seed stay what they were before this class existed)."""
    krng = random.Random(f"{seed}/kinesis-delivery")
    if krng.random() < 0.3:
        scenario.kinesis_duplicate_every = krng.choice((0, 2, 3, 5))
        scenario.kinesis_late_every = krng.choice((0, 2, 3, 4)) if scenario.kinesis_duplicate_every else krng.choice((2, 3))
        scenario.classes.add("kinesis-delivery")


def _stream_fault(rng: random.Random, scenario: Scenario, last: int) -> None:
    what = rng.random()
    if what < 0.35:
        cls, service, op, target, kinds = rng.choice(STREAM_AWS)
        kind = rng.choice(kinds)
        times = 1 if kind == "crash" else rng.choice((1, 2, 3, 5, 8, 12))
        scenario.aws_faults.append(AwsFault("stream", service, op, kind, times=times, after=rng.randint(0, 4),
                                            target=target))
        scenario.classes.add(f"stream-{cls}")
    elif what < 0.65:
        sink = rng.choice(("slack", "crm"))
        kind = rng.choice(SLACK_KINDS if sink == "slack" else CRM_KINDS)
        times = rng.randint(1, 2) if kind.startswith("hang") else rng.randint(1, 6)
        scenario.http_faults.append(HttpFault("stream", rng.randint(0, last + 2), sink, kind, times))
        scenario.classes.add(f"stream-http-{sink}")
    elif what < 0.92:
        kind = rng.choice(("deadline", "overrun", "crash", "lost-response", "crash", "lost-response"))
        scenario.invocation_faults.append(
            InvocationFault(rng.choice(CONSUMERS), rng.randint(1, 6), kind, at_check=rng.randint(1, 4)))
        scenario.classes.add(f"invocation-{kind}")
    else:
        scenario.clock_jumps[rng.randint(1, last + 3)] = rng.choice((120.0, 4000.0))
        scenario.classes.add("clock-jump")
