"""The one list of consumers, shared by the Lambda handlers, the reprocess worker and the API.

Importing this module imports no consumer: ``Consumer.load()`` imports the consumer's own
module only when asked, so each Lambda pays only for its own client library.

A consumer module exposes ``handle_record(record)``, ``SETTINGS`` (its ``streamkit.settings``
declarations, checked at cold start with the loop's and the policy's) and, optionally,
``warm_up()`` (run during init, e.g. to import its client library). Its Lambda entry point,
``handlers/<name_with_underscores>.py``, is two lines::

    from consumers.registry import consumer_handler
    handler = consumer_handler(__name__)

Naming conventions (serverless.yml follows them, so a laptop can find the queues by name):
  failure queue  {SERVICE_NAME}-{STAGE}-{consumer}-failures
  parking queue  {SERVICE_NAME}-{STAGE}-{consumer}-parking
  env overrides  {CONSUMER_KEY}_FAILURE_QUEUE_URL, {CONSUMER_KEY}_PARKING_QUEUE_URL
                 (e.g. SEARCH_INDEXER_FAILURE_QUEUE_URL); inside a consumer's own function
                 FAILURE_QUEUE_URL / PARKING_QUEUE_URL.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

DEFAULT_SERVICE_NAME = "userstream"
DEFAULT_STAGE = "dev"
POLICIES = ("soft-fail", "hard-fail", "dlq-capture")
REPROCESS_MODES = ("replay", "latest")


def stack_prefix(env: Mapping[str, str] | None = None) -> str:
    """``{SERVICE_NAME}-{STAGE}``: the prefix of every deployed name (queues, functions, tables)."""
    env = os.environ if env is None else env
    return f"{env.get('SERVICE_NAME') or DEFAULT_SERVICE_NAME}-{env.get('STAGE') or DEFAULT_STAGE}"


class UnknownConsumerError(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown consumer {self.name!r}; known consumers: {', '.join(CONSUMERS)}"


@dataclass(frozen=True)
class Consumer:
    name: str
    module: str
    default_policy: str
    reprocess_mode: str
    description: str = ""

    @property
    def key(self) -> str:
        """``search-indexer`` -> ``SEARCH_INDEXER`` (prefix of its environment overrides)."""
        return self.name.upper().replace("-", "_")

    @property
    def handler_module(self) -> str:
        """``search-indexer`` -> ``handlers.search_indexer`` (serverless.yml's handler path)."""
        return "handlers." + self.name.replace("-", "_")

    def import_module(self) -> ModuleType:
        return importlib.import_module(self.module)

    def load(self) -> Callable:
        """Import the consumer module and return its ``handle_record``."""
        return self.import_module().handle_record

    def settings(self) -> tuple:
        """The consumer's own setting declarations (its module's ``SETTINGS``)."""
        return tuple(getattr(self.import_module(), "SETTINGS", ()))

    def handler(self, **options: Any) -> Callable:
        """Its Lambda handler: ``stream_handler`` over the module's ``handle_record``, with its
        ``SETTINGS`` checked and its ``warm_up`` run at cold start. ``options`` go to
        ``stream_handler`` (``policy=``, ``env=``...)."""
        from streamkit import stream_handler

        module = self.import_module()
        return stream_handler(
            self.name,
            module.handle_record,
            settings=getattr(module, "SETTINGS", ()),
            warm_up=getattr(module, "warm_up", None),
            slowest_call_s=getattr(module, "slowest_call_s", None),
            **options,
        )

    def queue_name(self, kind: str, env: Mapping[str, str] | None = None) -> str:
        """``kind`` is ``failures`` or ``parking``."""
        return f"{stack_prefix(env)}-{self.name}-{kind}"

    def configured_queue_url(self, kind: str, env: Mapping[str, str] | None = None) -> str | None:
        """The queue URL from the environment, if one is set (else resolve ``queue_name``)."""
        env = os.environ if env is None else env
        var = {"failures": "FAILURE_QUEUE_URL", "parking": "PARKING_QUEUE_URL"}[kind]
        return env.get(f"{self.key}_{var}") or None

    def resolve_queue_url(self, sqs: Any, kind: str, env: Mapping[str, str] | None = None) -> str | None:
        """The configured URL, else ``queue_name`` looked up with ``GetQueueUrl``; ``None`` when
        that queue does not exist (other errors propagate: the caller says what failed)."""
        url = self.configured_queue_url(kind, env)
        if url:
            return url
        from streamkit.awsclient import is_not_found  # light; keeps this module import-free

        try:
            return sqs.get_queue_url(QueueName=self.queue_name(kind, env))["QueueUrl"]
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise


CONSUMERS: dict[str, Consumer] = {
    c.name: c
    for c in (
        Consumer(
            "search-indexer",
            "consumers.search_indexer",
            default_policy="dlq-capture",
            reprocess_mode="latest",
            description="keeps the user search index (OpenSearch, or SQLite FTS5 locally)",
        ),
        Consumer(
            "slack-notifier",
            "consumers.slack_notifier",
            default_policy="soft-fail",
            reprocess_mode="replay",
            description="posts new signups to a Slack incoming webhook",
        ),
        Consumer(
            "crm-sync",
            "consumers.crm_sync",
            default_policy="hard-fail",
            reprocess_mode="latest",
            description="upserts contacts in the CRM, archives them on REMOVE",
        ),
    )
}


def get_consumer(name: str) -> Consumer:
    try:
        return CONSUMERS[name]
    except KeyError:
        raise UnknownConsumerError(name) from None


def consumer_handler(name: str, **options: Any) -> Callable:
    """The Lambda handler of consumer ``name``, or of the consumer whose entry point is module
    ``name`` (``handlers/x.py`` passes its ``__name__``: the consumer's name is written once)."""
    for consumer in CONSUMERS.values():
        if name == consumer.handler_module:
            return consumer.handler(**options)
    return get_consumer(name).handler(**options)
