"""Running the records of a round through ``handle_record``.

Items are grouped (an envelope by its record's item key, an on-failure message by its
shard); a group runs on one thread, in stream order, so two records of one key never run at
the same time. Each record runs as captured (``replay``) or rebuilt from the table
(``latest``); a claim-checked envelope's record is fetched from S3 first; an on-failure
message's records are read back from the stream (``backstop``), or read from the S3 object
a hard-fail consumer's destination kept (every object of a notification is fetched before
any record runs, so an S3 error leaves the message whole), and the ones that fail become
envelopes of their own (``Item.follow_ups``). Transient errors get the stream path's
bounded retries. Running only sets each item's outcome: settling acts on it.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamkit import onfailure
from streamkit.awsclient import ClientCache, describe_aws_error, error_code, is_not_found
from streamkit.deadline import Deadline
from streamkit.envelope import build_envelope, describe_error
from streamkit.errors import ConfigError, MalformedRecordError
from streamkit.record import StreamRecord
from streamkit.retry import call_with_retries

from . import backstop
from .classify import Kind, foreign_function, sequence_of
from .item import Item, Outcome
from .latest import build_latest
from .options import DrainOptions

STREAM_ATTEMPTS = 2  # a record read back from the stream: the stream's retries, then this run


class ParkError(Exception):
    """A record that can never succeed as it is; ``reason`` goes with it to the parking queue."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RecordRunner:
    """Runs rounds for one drain; ``options`` are resolved (retries, users table set)."""

    def __init__(self, options: DrainOptions, clients: ClientCache, handle_record: Callable[[StreamRecord], Any],
                 deadline: Deadline):
        self.options, self.clients, self.deadline = options, clients, deadline
        self.consumer = options.consumer
        self.mode = options.effective_mode
        self.handle_record = handle_record
        # handle_record raised ConfigError (a setting, not a record): nothing more runs, what
        # did not finish is made visible again as it was, and the drain ends with exit 2
        self.config_error: str | None = None

    def run_round(self, items: list[Item], pool: ThreadPoolExecutor | None) -> None:
        groups: dict[str, list[Item]] = defaultdict(list)
        for item in items:
            if item.outcome is Outcome.PENDING:
                groups[item.what.group].append(item)
        tasks = [sorted(group, key=lambda it: (it.what.order, it.order)) for group in groups.values()]
        if pool is None or len(tasks) < 2:
            for group in tasks:
                self._run_group(group)
        else:
            list(pool.map(self._run_group, tasks))

    def _run_group(self, group: list[Item]) -> None:
        for item in group:
            if self.deadline.expired() or self.config_error:
                item.outcome = Outcome.NOT_STARTED
                continue
            try:
                if item.what.on_failure is not None:
                    self._run_on_failure(item, [item.what.on_failure])
                elif item.what.kind is Kind.ON_FAILURE_OBJECT:
                    self._run_on_failure(item, self._fetch_objects(item.what.objects))
                else:
                    self._run_envelope(item)
            except ConfigError as exc:  # not this message's failure: it goes back untouched
                self.config_error = self.config_error or (str(exc) or type(exc).__name__)
                item.follow_ups.clear()
                item.stream_records = 0
                item.outcome = Outcome.NOT_STARTED
            except ParkError as exc:
                item.park(exc.reason)
            except Exception as exc:
                item.outcome, item.error = Outcome.FAILED, describe_error(exc)

    # ---- one record ------------------------------------------------------------------------
    def _call(self, record: dict) -> None:
        try:
            view = StreamRecord(record).validate()  # on Kinesis: its data decodes
        except MalformedRecordError as exc:
            raise ParkError(f"not a valid stream record: {exc}") from None
        call_with_retries(
            self.handle_record,
            view,
            deadline=self.deadline,
            max_retries=self.options.max_retries or 0,
            base_delay_s=self.options.retry_base_delay_s or 0.0,
            max_delay_s=self.options.retry_max_delay_s or 0.0,
        )

    def _in_mode(self, record: dict, mode: str) -> dict:
        if mode == "replay":
            return record
        if not self.options.users_table:
            raise ParkError("latest mode needs USERS_TABLE to re-read the item")
        try:
            return build_latest(self.clients.get("dynamodb"), self.options.users_table, record)
        except ValueError as exc:  # no keys
            raise ParkError(str(exc)) from None

    # ---- an envelope ---------------------------------------------------------------------
    def _run_envelope(self, item: Item) -> None:
        env = item.what.envelope
        assert env is not None
        record = self._fetch_payload(env.payload_ref) if env.payload_ref else env.record
        self._call(self._in_mode(record, self.mode))
        item.outcome = Outcome.HANDLED

    def _fetch_payload(self, ref: dict) -> dict:
        where = f"s3://{ref['bucket']}/{ref['key']}"
        try:
            obj = self.clients.get("s3").get_object(Bucket=ref["bucket"], Key=ref["key"])
        except Exception as exc:
            if is_not_found(exc):
                raise ParkError(f"claim-checked record {where} is missing") from None
            raise
        try:
            record = json.loads(obj["Body"].read())
        except ValueError as exc:
            raise ParkError(f"claim-checked record {where} is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ParkError(f"claim-checked record {where} is not an object")
        return record

    # ---- on-failure messages and objects --------------------------------------------------
    def _fetch_objects(self, refs: tuple[onfailure.ObjectRef, ...]) -> list[onfailure.OnFailureMessage]:
        """Every object of a notification, read and parsed before any record runs: an S3 error
        propagates (the message stays, nothing ran), a missing or unusable object parks it."""
        if not refs:  # S3's test event: nothing to read, nothing to run
            return []
        s3 = self.clients.get("s3")
        messages = []
        for ref in refs:
            extra = {"VersionId": ref.version_id} if ref.version_id else {}
            try:
                data = s3.get_object(Bucket=ref.bucket, Key=ref.key, **extra)["Body"].read()
            except Exception as exc:
                if is_not_found(exc) or error_code(exc) == "NoSuchVersion":
                    raise ParkError(f"on-failure object {ref.url} is missing ({describe_aws_error(exc)}): "
                                    "its records are gone; reconcile these keys from the table") from None
                raise
            try:
                msg = onfailure.parse_object(data, ref)
            except onfailure.OnFailureMessageError as exc:
                raise ParkError(exc.reason) from None
            foreign = foreign_function(msg, self.consumer)
            if foreign:
                raise ParkError(f"{foreign} (object {ref.url})")
            messages.append(msg)
        return messages

    def _run_on_failure(self, item: Item, messages: list[onfailure.OnFailureMessage]) -> None:
        """Each message's records (its own copy, else read back from the stream), in stream
        order; the ones that fail become envelopes. Every range is resolved before any record
        runs: a read error leaves the message with nothing captured, never half of it."""
        resolved = []
        for msg in messages:
            streams = None if msg.records is not None else self.clients.get(backstop.client_service(msg))
            resolved.append((msg, backstop.resolve(msg, streams)))
        reasons = []
        for msg, res in resolved:
            item.stream_records += len(res.records)
            mode = "latest" if res.expired else self.mode
            for record in sorted(res.records, key=sequence_of):
                try:
                    self._call(self._in_mode(record, mode))
                except ConfigError:
                    raise  # the whole message goes back: _run_group
                except Exception as exc:
                    error = (
                        {"type": "ParkError", "message": exc.reason, "traceback": ""}
                        if isinstance(exc, ParkError)
                        else describe_error(exc)
                    )
                    item.follow_ups.append(build_envelope(
                        consumer=self.consumer, record=record, error=error, attempts=STREAM_ATTEMPTS,
                        function_name=msg.function_name, request_id=None,
                    ))
            if res.reason:
                reasons.append(res.reason)
        if reasons:
            raise ParkError("; ".join(reasons))
        if not item.follow_ups:
            item.outcome = Outcome.HANDLED
            return
        types = {e["error"]["type"] for e in item.follow_ups}
        item.outcome = Outcome.FAILED
        item.error = {
            "type": types.pop() if len(types) == 1 else "Mixed",
            "message": f"{len(item.follow_ups)} of {item.stream_records} stream records failed; captured as envelopes",
            "traceback": "",
        }
