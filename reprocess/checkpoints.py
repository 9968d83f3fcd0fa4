"""Where backfill and rewind jobs keep their manifest, their parts' checkpoints and summary.

A laptop and the reprocess Lambdas must see the same state (a job started with ``--remote``
is followed from a laptop; a laptop's job can be resumed in Lambda), so the store is S3,
under the ``jobs/`` prefix of the jobs bucket (the stack's failure bucket), with a local
directory as the fallback for runs without a bucket. The layout, relative to the store:

    jobs/<jobId>.json                 the job's summary once every part has finished (the
                                      key the operator API reads for any job)
    jobs/<jobId>/manifest.json        what was asked (kind, consumer, options), the plan
                                      (parts), the resolved time range, created when
    jobs/<jobId>/parts/<part>.json    one part's state: status, checkpoint, counts
    jobs/<jobId>/cancel.json          present = cancel: parts stop at their next checkpoint
                                      (its format and key: ``reprocess.jobstore``, the owner of
                                      the operator jobs' records, which the API writes too)

Each part's state is written by the one runner of that part (a thread, or one Lambda
invocation at a time: a continuation starts after the previous invocation's last write).
No listing is needed: the manifest names the parts.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from streamkit.awsclient import is_not_found, make_client
from streamkit.errors import ConfigError

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_LOCAL_DIR = ".local-state"  # the local runtime's state directory; jobs/ goes under it


def summary_key(job_id: str) -> str:
    return f"jobs/{job_id}.json"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/manifest.json"


def part_key(job_id: str, part: str) -> str:
    return f"jobs/{job_id}/parts/{part}.json"


def check_job_id(job_id: Any) -> str:
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise ConfigError(f"a job id is 1 to 64 letters, digits, '-' or '_', got {job_id!r}")
    return job_id


class CheckpointStore(Protocol):
    location: str  # s3://bucket or a directory, for messages

    def get(self, key: str) -> dict | None:
        """The JSON object at ``key``, or ``None`` when there is none."""

    def put(self, key: str, data: dict) -> None:
        """Write ``data`` at ``key`` (whole, replacing what was there)."""

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing when it is not there)."""

    def remote(self) -> bool:
        """True when Lambdas can read it (S3)."""


class S3Store:
    def __init__(self, bucket: str, s3: Any = None):
        self.bucket = bucket
        self.location = f"s3://{bucket}"
        self._s3 = s3

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = make_client("s3", max_attempts=5)
        return self._s3

    def get(self, key: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        data = json.loads(body)
        return data if isinstance(data, dict) else None

    def put(self, key: str, data: dict) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(data, default=str).encode(),
                           ContentType="application/json")

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def remote(self) -> bool:
        return True


class FileStore:
    """The same layout in a local directory; writes are atomic (temporary file + rename)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.location = str(self.root)

    def get(self, key: str) -> dict | None:
        try:
            data = json.loads((self.root / key).read_text())
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, data: dict) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, default=str))
        os.replace(tmp, path)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def remote(self) -> bool:
        return False


def jobs_bucket(env: Mapping[str, str] | None = None) -> str | None:
    """``JOBS_BUCKET``, else ``FAILURE_BUCKET`` (the stack keeps jobs/ in its failure bucket)."""
    from .options import JOBS_BUCKET

    env = os.environ if env is None else env
    return JOBS_BUCKET.read(env) or env.get("FAILURE_BUCKET") or None


def open_store(where: str | None = None, env: Mapping[str, str] | None = None, *, s3: Any = None) -> CheckpointStore:
    """``where``: ``s3://bucket`` or a directory. Default: the jobs bucket when one is set,
    else ``.local-state/`` (a laptop run without AWS state to share)."""
    if where is None:
        bucket = jobs_bucket(env)
        if bucket:
            return S3Store(bucket, s3)
        return FileStore(DEFAULT_LOCAL_DIR)
    if where.startswith("s3://"):
        bucket = where[len("s3://"):].strip("/")
        if not bucket or "/" in bucket:
            raise ConfigError(f"--checkpoints {where!r}: give s3://BUCKET (jobs go under its jobs/ prefix)")
        return S3Store(bucket, s3)
    return FileStore(where)
