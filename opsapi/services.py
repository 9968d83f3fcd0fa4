"""The objects behind the routes, made once per app and found through ``get_services()``.

Flask's way to hang state on an app is ``app.extensions``; this module owns that key, so
the views, the tests and the next feature reach the inspector, sampler and job runner by
public attributes, never by digging into an app or a closure.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from streamkit.awsclient import ClientCache

from .inspect_aws import Inspector, api_clients
from .jobs import JobRunner
from .sampling import FailureSampler

EXTENSION_KEY = "opsapi"


@dataclass(frozen=True)
class Services:
    clients: ClientCache
    inspector: Inspector
    sampler: FailureSampler
    jobs: JobRunner

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Services:
        """From the app's config (``opsapi.app.create_app`` documents the keys)."""
        clients = api_clients()
        remote = config["REPROCESS_FUNCTION_NAME"]
        inspector = Inspector(clients, state_path=config["ESM_STATE_PATH"], use_cloudwatch=bool(remote))
        sampler = FailureSampler(inspector, ttl_s=config["SAMPLE_TTL_S"])
        jobs = JobRunner(clients=clients, function_name=remote, on_finish=sampler.invalidate,
                         drain_options=config["DRAIN_OPTIONS"], jobs_bucket=config["JOBS_BUCKET"])
        return cls(clients, inspector, sampler, jobs)

    def install(self, app: Flask) -> None:
        app.extensions[EXTENSION_KEY] = self


def get_services(app: Flask | None = None) -> Services:
    """The ``Services`` of ``app`` (default: the app handling the current request)."""
    found = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(found, Services)
    return found
