import pytest

from consumers.users import display_name, name_parts, schema_mode
from streamkit import ConfigError

V1 = {"user_id": "u1", "fullname": "Ada Lovelace"}
V2 = {"user_id": "u2", "firstname": "Grace", "lastname": "Hopper"}


def test_compat_is_the_default_and_reads_both_schemas():
    assert schema_mode() == "compat"
    assert display_name(V1) == "Ada Lovelace"
    assert display_name(V2) == "Grace Hopper"
    assert name_parts(V1) == ("Ada", "Lovelace")
    assert name_parts(V2) == ("Grace", "Hopper")
    assert display_name({"user_id": "u3"}) == ""
    assert display_name({"firstname": "Cher"}) == "Cher"


def test_legacy_mode_is_the_v1_code_and_fails_on_v2_items(monkeypatch):
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    assert display_name(V1) == "Ada Lovelace"
    with pytest.raises(KeyError, match="fullname"):
        display_name(V2)
    with pytest.raises(KeyError, match="fullname"):
        name_parts(V2)


def test_switch_is_read_on_every_call(monkeypatch):
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    with pytest.raises(KeyError):
        display_name(V2)
    monkeypatch.setenv("USER_SCHEMA_MODE", "compat")  # "the fix is deployed", same process
    assert display_name(V2) == "Grace Hopper"


def test_unknown_mode_is_a_config_error(monkeypatch):
    monkeypatch.setenv("USER_SCHEMA_MODE", "v3")
    with pytest.raises(ConfigError, match="USER_SCHEMA_MODE"):
        display_name(V1)
