"""The reprocess worker: drain a consumer's failure queue through its own ``handle_record``.

``drain(consumer_name, ...) -> Summary`` is the API (see ``reprocess.worker``); the CLI is
``python reprocess/reprocess.py``; the Lambda entry point is ``handlers/reprocess.py``.
Imports stay light: boto3 is imported when the first client is made.
"""
from .summary import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, Summary
from .worker import DEFAULT_MAX_ATTEMPTS, drain

__all__ = ["drain", "Summary", "DEFAULT_MAX_ATTEMPTS", "EXIT_OK", "EXIT_FAILURES", "EXIT_USAGE"]
