"""Fixed costs per invocation and per failure, each against what it replaced (same run).

* EMF document: ``streamkit.metrics`` (a template) vs Powertools' EMF provider flush;
* deadline check per record: ``Deadline.expired()`` (monotonic clock against an end read once
  per batch) vs asking the Lambda context each time;
* traceback of a failure: ``streamkit.excinfo.compact_traceback`` vs ``traceback.format_exception``;
* one failure log line: ``streamkit.log.write_line`` vs a structlog line with the same fields.
"""
from __future__ import annotations

import contextlib
import io
import traceback

from .timing import interleaved

N = 2_000  # calls per timed round


class _Null(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def _exc() -> BaseException:
    def handle(item):
        return item["fullname"]

    def loop(item):
        return handle(item)

    try:
        loop({})
    except KeyError as exc:
        return exc
    raise AssertionError


def run() -> list[dict]:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    from streamkit.deadline import Deadline
    from streamkit.excinfo import compact_traceback
    from streamkit.log import get_logger, write_line
    from streamkit.metrics import COUNTERS, ConsumerMetrics
    from streamkit.testing import LambdaContext

    counts = {"processed": 24, "failed": 1, "captured": 0, "retried": 0, "reported_for_retry": 0}
    ours = ConsumerMetrics("bench")
    theirs = AmazonCloudWatchEMFProvider(namespace="bench", service="bench", default_dimensions={"consumer": "bench"})

    def powertools_emf():
        for name in COUNTERS:
            theirs.add_metric(name=name, unit="Count", value=counts.get(name, 0))
        theirs.flush_metrics()

    ctx = LambdaContext(timeout_s=900)
    deadline = Deadline(ctx, 2_000)
    exc = _exc()
    context = {"consumer": "bench", "policy": "soft-fail", "aws_request_id": "r-1"}
    fields = {"sequence_number": "100000000000000000042", "event_name": "INSERT", "event_id": "e1",
              "keys": {"user_id": "u1"}, "error_type": "KeyError", "error": "'fullname'", "repeat": 2}
    logger = get_logger(**context)

    pairs = {
        "EMF document per invocation": (lambda: ours.publish(counts), powertools_emf,
                                         "streamkit template", "Powertools EMF provider"),
        "deadline check per record": (deadline.expired, lambda: ctx.get_remaining_time_in_millis() / 1000 - 2.0 <= 0,
                                      "Deadline.expired (once per batch)", "context per record"),
        "traceback per failure": (lambda: compact_traceback(exc), lambda: "".join(traceback.format_exception(exc)),
                                  "compact (streamkit.excinfo)", "traceback.format_exception"),
        "compact failure line": (lambda: write_line(context, "error", "record failed; dropped", fields),
                                 lambda: logger.error("record failed; dropped", **fields),
                                 "streamkit.log.write_line", "structlog line"),
    }
    rows = []
    with contextlib.redirect_stdout(_Null()):
        for what, (new, old, new_name, old_name) in pairs.items():
            def many(fn):
                def call(_):
                    for _ in range(N):
                        fn()
                return call

            stats = interleaved({new_name: many(new), old_name: many(old)}, 15)
            a, b = stats[new_name], stats[old_name]
            rows.append({"section": "fixed", "what": what, "ours": new_name, "theirs": old_name,
                         "ours_us": a.min / N * 1e6, "theirs_us": b.min / N * 1e6, "ratio": a.min / b.min})
    return rows
