"""search-indexer against both sinks: upsert, REMOVE, out-of-order writes, errors, CLI."""
import json

import pytest

import consumers.search_indexer as si
from streamkit import ConfigError, MalformedRecordError, PermanentError, TransientError, is_transient
from streamkit.testing import redeliver

from .conftest import T0, rec, sr, v1_user, v2_user

# Sequence numbers of different lengths: as text "9..." > "1...", as integers it is the reverse.
# Records made in one second (at=0) are ordered by them on DynamoDB Streams.
OLD = "99999999999999999999999"      # 23 digits
NEW = "100000000000000000000000"     # 24 digits
NEWER = "100000000000000000000001"
SOURCES = ["dynamodb", "kinesis"]


def change(source: str, event: str, item: dict | None, *, at: float, old: dict | None = None, user=None):
    """A change made ``at`` seconds after T0 on ``source`` (on DynamoDB Streams its sequence
    number grows with ``at`` too, as one item's changes do in its shard)."""
    seq = str(10**22 + int(at * 1000)) if source == "dynamodb" else None
    return sr(event, item, old=old, at=at, seq=seq, source=source, user=user)


def test_insert_then_search_finds_the_user(search_sink):
    si.handle_record(sr("INSERT", v1_user(1), seq=OLD))
    si.handle_record(sr("INSERT", v2_user(2), seq=NEW))
    hits = si.search("ada")
    assert [h["user_id"] for h in hits] == ["u1"]
    assert hits[0]["name"] == "Ada Lovelace1" and hits[0]["email"] == "user1@example.com"
    assert [h["user_id"] for h in si.search("hopper2")] == ["u2"]
    assert si.search("nobody") == []


def test_modify_replaces_the_document(search_sink):
    si.handle_record(sr("INSERT", v1_user(1), seq=OLD, at=0))
    modify = sr("MODIFY", v1_user(1, fullname="Ada King"), old=v1_user(1), seq=NEW, at=0)
    si.handle_record(modify)
    assert si.search("lovelace1") == []
    assert [h["name"] for h in si.search("king")] == ["Ada King"]
    doc = search_sink.get("u1")
    assert doc["sequence_number"] == NEW and doc["change_order"] == modify.change_order


def test_same_second_orders_by_sequence_number_as_integers(search_sink):
    """DynamoDB Streams gives whole seconds: within one, the 23-digit OLD is older than the
    24-digit NEW (as integers; as text it would be the reverse)."""
    si.handle_record(sr("MODIFY", v1_user(1, fullname="Ada New"), seq=NEW, at=0))
    si.handle_record(sr("MODIFY", v1_user(1, fullname="Ada Old"), seq=OLD, at=0.9))  # late redelivery
    doc = search_sink.get("u1")
    assert doc["name"] == "Ada New" and doc["sequence_number"] == NEW
    assert si.search("old") == []


@pytest.mark.parametrize("source", SOURCES)
def test_older_record_never_overwrites_newer_state(search_sink, source):
    newer = change(source, "MODIFY", v1_user(1, fullname="Ada New"), at=2)
    older = change(source, "MODIFY", v1_user(1, fullname="Ada Old"), at=1)
    si.handle_record(newer)
    si.handle_record(older)  # late: out of order
    doc = search_sink.get("u1")
    assert doc["name"] == "Ada New" and doc["change_order"] == newer.change_order
    assert doc["sequence_number"] == newer.sequence_number
    assert si.search("old") == []


@pytest.mark.parametrize("source", SOURCES)
def test_same_record_twice_is_a_no_op(search_sink, source):
    record = change(source, "INSERT", v1_user(1), at=1)
    order = record.change_order
    assert search_sink.put("u1", si.build_document(record.new_image), order) == "written"
    assert search_sink.put("u1", si.build_document(record.new_image), order) == "stale"
    si.handle_record(record)
    assert len(si.search("ada")) == 1


def test_kinesis_change_delivered_twice_around_a_newer_one_leaves_the_newer_state(search_sink):
    """Kinesis Data Streams for DynamoDB may deliver a change again (a new Kinesis record, new
    sequence number) after a newer change of the same item: the copy must not roll it back."""
    first = rec("MODIFY", v1_user(1, fullname="Ada First"), at=1, source="kinesis")
    second = rec("MODIFY", v1_user(1, fullname="Ada Second"), at=2, source="kinesis")
    copy = redeliver(first)
    views = [sr_of(r) for r in (first, second, copy)]
    assert views[2].sequence_number != views[0].sequence_number
    assert views[2].change_order == views[0].change_order < views[1].change_order
    for view in views:
        si.handle_record(view)
    doc = search_sink.get("u1")
    assert doc["name"] == "Ada Second" and doc["sequence_number"] == views[1].sequence_number
    assert si.search("first") == []


def sr_of(raw):
    from streamkit import StreamRecord

    return StreamRecord(raw)


@pytest.mark.parametrize("source", SOURCES)
def test_remove_hides_the_user_and_missing_documents_are_fine(search_sink, source):
    si.handle_record(change(source, "INSERT", v1_user(1), at=1))
    si.handle_record(change(source, "REMOVE", None, old=v1_user(1), at=2))
    assert si.search("ada") == []
    assert search_sink.get("u1")["deleted"] is True
    si.handle_record(change(source, "REMOVE", None, old=v1_user(9), at=3))  # never indexed: fine
    assert search_sink.get("u9")["deleted"] is True


@pytest.mark.parametrize("source", SOURCES)
def test_older_remove_does_not_delete_newer_state(search_sink, source):
    si.handle_record(change(source, "INSERT", v1_user(1), at=2))
    si.handle_record(change(source, "REMOVE", None, old=v1_user(1), at=1))
    assert [h["user_id"] for h in si.search("ada")] == ["u1"]


@pytest.mark.parametrize("source", SOURCES)
def test_older_insert_does_not_resurrect_a_removed_user(search_sink, source):
    si.handle_record(change(source, "REMOVE", None, old=v1_user(1), at=2))
    si.handle_record(change(source, "INSERT", v1_user(1), at=1))
    assert si.search("ada") == []
    si.handle_record(change(source, "INSERT", v1_user(1, fullname="Ada Again"), at=3))  # a real re-signup
    assert [h["name"] for h in si.search("again")] == ["Ada Again"]


def test_documents_from_before_change_order_count_as_older(search_sink):
    """An index written by the previous version stores only ``seq`` (a padded sequence
    number): any change replaces such a document, even an old one, and then carries the order."""
    legacy = {"user_id": "u1", "name": "Ada Legacy", "email": "user1@example.com", "deleted": False,
              "seq": NEWER, "seq_key": NEWER.zfill(48)}
    if isinstance(search_sink, __import__("consumers.sinks.sqlite_fts", fromlist=["SqliteSink"]).SqliteSink):
        path = search_sink.path
        search_sink.close()
        import sqlite3

        old_db = sqlite3.connect(path)  # the previous schema: no change_order column
        old_db.executescript("DROP TABLE users_docs; DROP TABLE users_fts;"
                             "CREATE TABLE users_docs (id TEXT PRIMARY KEY, seq TEXT NOT NULL, "
                             "deleted INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);"
                             "CREATE VIRTUAL TABLE users_fts USING fts5(name, email, body, tokenize = 'unicode61');")
        old_db.execute("INSERT INTO users_docs VALUES ('u1', ?, 0, ?)", (NEWER.zfill(48), json.dumps(legacy)))
        old_db.commit()
        old_db.close()
        si._sinks.clear()
        sink = si.get_sink()  # opening it adds the column
    else:
        sink = search_sink
        sink.ensure_index()
        sink.client.index(index=sink.index, id="u1", body=legacy)
    assert sink.get("u1")["name"] == "Ada Legacy" and "change_order" not in sink.get("u1")
    older = sr("MODIFY", v1_user(1, fullname="Ada Migrated"), seq=OLD, at=0)  # a lower seq than the stored one
    si.handle_record(older)
    doc = sink.get("u1")
    assert doc["name"] == "Ada Migrated" and doc["change_order"] == older.change_order
    si.handle_record(sr("MODIFY", v1_user(1, fullname="Ada Older"), seq="1", at=-5))  # and from now on, guarded
    assert sink.get("u1")["name"] == "Ada Migrated"
    assert [h["name"] for h in si.search("migrated")] == ["Ada Migrated"]


def test_schema_change_legacy_fails_with_keyerror_fix_accepts_both(search_sink, monkeypatch):
    monkeypatch.setenv("USER_SCHEMA_MODE", "legacy")
    si.handle_record(sr("INSERT", v1_user(1), seq=OLD))
    with pytest.raises(KeyError, match="fullname"):
        si.handle_record(sr("INSERT", v2_user(2), seq=NEW))
    monkeypatch.setenv("USER_SCHEMA_MODE", "compat")
    si.handle_record(sr("INSERT", v2_user(2), seq=NEW))
    assert [h["name"] for h in si.search("grace")] == ["Grace Hopper2"]


def test_unorderable_record_and_missing_image_are_permanent(search_sink):
    with pytest.raises(MalformedRecordError, match="tiebreak") as info:
        si.handle_record(sr("INSERT", v1_user(1), seq="12ab"))
    assert not is_transient(info.value)
    no_time = rec("INSERT", v1_user(1), source="kinesis")
    change_record = json.loads(__import__("base64").b64decode(no_time["kinesis"]["data"]))
    del change_record["dynamodb"]["ApproximateCreationDateTime"]
    from streamkit import sources

    with pytest.raises(MalformedRecordError, match="ApproximateCreationDateTime"):
        si.handle_record(sr_of(sources.with_change(no_time, change_record)))
    assert search_sink.get("u1") is None
    with pytest.raises(PermanentError, match="NewImage"):
        si.handle_record(sr("INSERT", None, seq=NEW, user="u1"))


# --- OpenSearch specifics ------------------------------------------------------------------
@pytest.fixture
def os_sink(opensearch, monkeypatch):
    monkeypatch.setenv("SEARCH_URL", opensearch.url)
    monkeypatch.setenv("SEARCH_INDEX", "users-test")
    return si.get_sink()


def test_opensearch_exact_requests(os_sink, opensearch):
    si.handle_record(sr("INSERT", v1_user(1), seq=OLD, at=0))
    modify = sr("MODIFY", v1_user(1, plan="team"), seq=NEW, at=0)
    si.handle_record(modify)
    calls = [(r.method, r.path, r.query) for r in opensearch.requests]
    assert calls == [
        ("HEAD", "/users-test", {}),
        ("PUT", "/users-test", {}),
        ("GET", "/users-test/_doc/u1", {}),
        ("PUT", "/users-test/_create/u1", {}),
        ("GET", "/users-test/_doc/u1", {}),
        ("PUT", "/users-test/_doc/u1", {"if_seq_no": "0", "if_primary_term": "1"}),
    ]
    assert json.loads(opensearch.requests[1].body)["mappings"]["properties"]["change_order"] == {"type": "keyword"}
    doc = json.loads(opensearch.requests[-1].body)
    assert doc["plan"] == "team" and doc["sequence_number"] == NEW and doc["deleted"] is False
    assert doc["change_order"] == modify.change_order == f"{T0 * 10**6:017d}.{NEW:0>40}"


def test_opensearch_concurrent_write_conflict_is_rechecked(os_sink, opensearch):
    """A 409 between our read and our write (someone else wrote) makes us compare again."""
    si.handle_record(sr("INSERT", v1_user(1), seq=OLD, at=0))
    mid, newer = sr("MODIFY", v1_user(1), seq=NEW, at=0), sr("MODIFY", v1_user(1), seq=NEWER, at=0)
    # Simulate the race for real: after our read, another writer stores a newer version.
    original_read = os_sink._read

    raced = []

    def racing_read(doc_id):
        current = original_read(doc_id)
        if not raced:
            raced.append(1)
            os_sink.client.index(index=os_sink.index, id=doc_id,
                                 body={**current["_source"], "name": "Racer", "change_order": newer.change_order})
        return current

    os_sink._read = racing_read
    assert os_sink.put("u1", si.build_document(v1_user(1, fullname="Ada Mid")), mid.change_order) == "stale"
    assert os_sink.get("u1")["name"] == "Racer"
    puts = [r for r in opensearch.requests if r.method == "PUT" and "if_seq_no" in r.query]
    assert len(puts) == 1  # the conditional write was refused (409), then the re-read saw NEWER


@pytest.mark.parametrize("status, error", [(429, TransientError), (503, TransientError), (400, PermanentError),
                                           (403, PermanentError)])
def test_opensearch_errors_map_to_transient_or_permanent(os_sink, opensearch, status, error):
    si.handle_record(sr("INSERT", v1_user(1), seq=OLD, at=0))  # index exists now
    opensearch.fail(status, {"error": {"type": "x", "reason": "injected"}, "status": status}, path_contains="/_doc/")
    with pytest.raises(error):
        si.handle_record(sr("MODIFY", v1_user(1), seq=NEW, at=0))
    si.handle_record(sr("MODIFY", v1_user(1, plan="after"), seq=NEW, at=0))  # the next attempt succeeds
    assert os_sink.get("u1")["plan"] == "after"


def test_opensearch_unreachable_is_transient(monkeypatch):
    from local.aws import free_port

    monkeypatch.setenv("SEARCH_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="unreachable"):
        si.handle_record(sr("INSERT", v1_user(1), seq=OLD))


def test_sigv4_for_amazon_hosts():
    from opensearchpy import Urllib3AWSV4SignerAuth

    from consumers.sinks.opensearch import aws_service, build_client, region_from_host

    host = "search-users-abc123.eu-west-1.es.amazonaws.com"
    assert aws_service(host) == "es" and region_from_host(host) == "eu-west-1"
    assert aws_service("abc.us-east-1.aoss.amazonaws.com") == "aoss"
    assert aws_service("localhost") is None
    conn = build_client(f"https://{host}").transport.get_connection()
    assert isinstance(conn.http_auth, Urllib3AWSV4SignerAuth)
    headers = conn.http_auth("GET", f"https://{host}/users/_doc/u1", None, {})
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256")
    assert "/eu-west-1/es/aws4_request" in headers["Authorization"]
    plain = build_client("http://localhost:9200").transport.get_connection()
    assert not callable(getattr(plain, "http_auth", None))


# --- configuration and CLI -----------------------------------------------------------------
def test_search_url_required_in_lambda_and_validated(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "userstream-dev-search-indexer")
    with pytest.raises(ConfigError, match="SEARCH_URL"):
        si.handle_record(sr("INSERT", v1_user(1), seq=OLD))
    monkeypatch.setenv("SEARCH_URL", "ftp://nope")
    with pytest.raises(ConfigError, match="sqlite"):
        si.handle_record(sr("INSERT", v1_user(1), seq=OLD))


def test_cli_search(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path}/cli.sqlite3"
    monkeypatch.setenv("SEARCH_URL", url)
    si.handle_record(sr("INSERT", v1_user(1), seq=OLD))
    si._sinks.clear()
    assert si.main(["search", "ada", "--json", "--url", url]) == 0
    assert [h["user_id"] for h in json.loads(capsys.readouterr().out)] == ["u1"]
    assert si.main(["search", "lovelace", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "u1\tAda Lovelace1" in out and "(1 match for 'lovelace')" in out


@pytest.mark.parametrize("source", SOURCES)
def test_concurrent_out_of_order_writers_end_at_the_newest(search_sink, source):
    """Shuffled MODIFYs of one user from 4 threads: the stored state is the newest change's,
    whatever the interleaving (conditional upsert / if_seq_no conflicts)."""
    import random
    import threading

    seqs = [str(10**22 + i * 7919) for i in range(24)]
    at = {seq: i * 0.25 for i, seq in enumerate(seqs)}  # 4 changes a second: ties on DynamoDB Streams
    order = seqs[:]
    random.Random(4).shuffle(order)
    chunks = [order[i::4] for i in range(4)]
    errors = []

    def writer(chunk):
        for seq in chunk:
            for _attempt in range(20):  # what the loop does with a TransientError (conflict storm)
                try:
                    si.handle_record(sr("MODIFY", v1_user(1, fullname=f"Ada S{seq}"), at=at[seq], source=source,
                                        seq=seq if source == "dynamodb" else None))
                    break
                except TransientError:
                    continue
            else:
                errors.append(seq)

    threads = [threading.Thread(target=writer, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    newest = max(seqs, key=int)
    doc = search_sink.get("u1")
    assert doc["name"] == f"Ada S{newest}"
