"""One secret setting: a plain env var locally, an SSM SecureString name in AWS.

``SLACK_WEBHOOK_URL`` / ``SLACK_WEBHOOK_URL_PARAM`` and ``CRM_TOKEN`` / ``CRM_TOKEN_PARAM``:
the plain value wins (local runs); otherwise the parameter is read with Powertools
Parameters (decrypted, cached ``SECRET_MAX_AGE_S`` seconds, default 300) so a rotated
secret is picked up without a redeploy and SSM is not called per record. Every value read
is registered with ``streamkit.redact``: no failure this process describes (the envelope,
the failure log, the ledger) carries it, in any form.
"""
from __future__ import annotations

import os

from streamkit.redact import register_secret
from streamkit.settings import Setting

SECRET_MAX_AGE_S = Setting(
    "SECRET_MAX_AGE_S", "how long a secret read from SSM is cached before it is read again (rotation)",
    parse=int, default=300, low=0, high=86_400,
)


def secret_settings(name: str, doc: str) -> tuple[Setting, ...]:
    """The declarations of secret ``name``: the plain variable or its ``_PARAM``, plus the cache age."""
    return (
        Setting(name, f"{doc} (plain value, for local runs)", required=True, either=f"{name}_PARAM",
                hint=f"{name} locally, or {name}_PARAM (the SSM SecureString name) in AWS"),
        Setting(f"{name}_PARAM", f"name of the SSM SecureString holding {name} (in AWS)"),
        SECRET_MAX_AGE_S,
    )


def get_secret(name: str) -> str:
    """The value of ``name`` from the env, or from SSM via ``<name>_PARAM``; ConfigError if neither."""
    value = os.environ.get(name)
    if value:
        register_secret(value)
        return value
    param = os.environ.get(f"{name}_PARAM")
    if not param:
        from streamkit import ConfigError

        raise ConfigError(f"set {name} (local) or {name}_PARAM (the SSM SecureString name, in AWS)")
    from aws_lambda_powertools.utilities import parameters  # only in AWS, only when needed

    value = str(parameters.get_parameter(param, decrypt=True, max_age=SECRET_MAX_AGE_S.read()))
    register_secret(value)  # from now on no failure description of this process carries it
    return value
