"""The objects behind the routes, made once per app and found through ``get_services()``.

Flask's way to hang state on an app is ``app.extensions``; this module owns that key, so
the views, the tests and the next feature reach the inspector, the ledger view and the job
runner by public attributes, never by digging into an app or a closure.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from streamkit.awsclient import ClientCache

from .circuits import CircuitView
from .inspect_aws import Inspector, api_clients
from .jobs import JobRunner
from .ledger_view import LedgerView

EXTENSION_KEY = "opsapi"


@dataclass(frozen=True)
class Services:
    clients: ClientCache
    inspector: Inspector
    ledger: LedgerView
    jobs: JobRunner
    circuits: CircuitView

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Services:
        """From the app's config (``opsapi.app.create_app`` documents the keys)."""
        clients = api_clients()
        remote = config["REPROCESS_FUNCTION_NAME"]
        clock = config.get("CLOCK") or time.monotonic
        inspector = Inspector(clients, state_path=config["ESM_STATE_PATH"], use_cloudwatch=bool(remote), clock=clock)
        ledger = LedgerView(clients, config["LEDGER_TABLE"], ttl_s=config["LEDGER_TTL_S"], clock=clock)
        jobs = JobRunner(clients=clients, function_name=remote, on_finish=ledger.invalidate,
                         drain_options=config["DRAIN_OPTIONS"], jobs_bucket=config["JOBS_BUCKET"], clock=clock)
        circuits = CircuitView(clients, config.get("CIRCUIT_TABLE"), clock=clock)
        return cls(clients, inspector, ledger, jobs, circuits)

    def install(self, app: Flask) -> None:
        app.extensions[EXTENSION_KEY] = self


def get_services(app: Flask | None = None) -> Services:
    """The ``Services`` of ``app`` (default: the app handling the current request)."""
    found = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(found, Services)
    return found
