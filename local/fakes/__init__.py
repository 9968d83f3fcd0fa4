"""Small local HTTP servers that speak the vendors' APIs (Slack webhook, HubSpot-style CRM,
a sliver of OpenSearch), for tests and the demo. Each starts in a thread on a free port:

    with FakeCRM() as crm:   # or crm = FakeCRM().start(); ...; crm.stop()
        os.environ["CRM_BASE_URL"] = crm.url
"""
from .base import FakeServer, Fault
from .crm import FakeCRM
from .opensearch import FakeOpenSearch
from .slack import FakeSlack

__all__ = ["FakeServer", "Fault", "FakeCRM", "FakeSlack", "FakeOpenSearch"]
