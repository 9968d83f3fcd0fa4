"""The local vendor fakes behave like the APIs they stand in for (what the demo relies on)."""
import json
import urllib.error
import urllib.request

import pytest

from local.fakes import FakeCRM, FakeSlack


def call(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def test_fake_crm_lists_active_and_archived_contacts_and_requires_a_token():
    with FakeCRM(token="tok") as crm:
        auth = {"Authorization": "Bearer tok"}
        status, body, _ = call("POST", crm.url + "/crm/v3/objects/contacts/batch/upsert",
                               {"inputs": [{"idProperty": "email", "id": "a@x.io", "properties": {"firstname": "A"}}]}, auth)
        assert status == 200 and json.loads(body)["results"][0]["new"] is True
        cid = json.loads(body)["results"][0]["id"]
        assert call("GET", crm.url + "/crm/v3/objects/contacts", headers={"Authorization": "Bearer nope"})[0] == 401
        listing = json.loads(call("GET", crm.url + "/crm/v3/objects/contacts", headers=auth)[1])["results"]
        assert [c["id"] for c in listing] == [cid]
        assert call("DELETE", f"{crm.url}/crm/v3/objects/contacts/{cid}", headers=auth)[0] == 204
        assert json.loads(call("GET", crm.url + "/crm/v3/objects/contacts", headers=auth)[1])["results"] == []
        archived = json.loads(call("GET", crm.url + "/crm/v3/objects/contacts?archived=true", headers=auth)[1])["results"]
        assert [c["id"] for c in archived] == [cid]


def test_fake_slack_faults_then_recovers(capsys):
    with FakeSlack(print_messages=True) as slack:
        slack.fail(429, "rate_limited", headers={"Retry-After": "2"})
        status, body, headers = call("POST", slack.webhook_url, {"text": "hi"})
        assert (status, body, headers["Retry-After"]) == (429, "rate_limited", "2")
        assert call("POST", slack.webhook_url, {"text": "hi"})[:2] == (200, "ok")
        assert call("POST", slack.webhook_url, {"nothing": 1})[:2] == (400, "invalid_payload")
        assert slack.messages == [{"text": "hi"}]
        assert "[slack] hi" in capsys.readouterr().out


@pytest.mark.parametrize("cls", [FakeCRM, FakeSlack])
def test_fakes_start_on_free_ports_side_by_side(cls):
    with cls() as a, cls() as b:
        assert a.port != b.port and a.port > 0
