"""Lambda filter syntax as the emulator evaluates it (FilterCriteria patterns)."""
import json

import pytest

from local.filters import FilterPatternError, matches, matches_any, parse_filters
from streamkit.testing import make_record

REC = make_record("INSERT", keys={"user_id": "u1"},
                  new_image={"user_id": "u1", "plan": "pro-annual", "age": 42, "tags": ["a", "b"]})


@pytest.mark.parametrize("pattern, expected", [
    ({"eventName": ["INSERT", "MODIFY"]}, True),
    ({"eventName": ["REMOVE"]}, False),
    ({"dynamodb": {"NewImage": {"plan": {"S": ["pro-annual"]}}}}, True),
    ({"dynamodb": {"NewImage": {"plan": {"S": [{"prefix": "pro"}]}}}}, True),
    ({"dynamodb": {"NewImage": {"plan": {"S": [{"prefix": "free"}]}}}}, False),
    ({"dynamodb": {"NewImage": {"plan": {"S": [{"anything-but": ["free"]}]}}}}, True),
    ({"dynamodb": {"NewImage": {"plan": {"S": [{"anything-but": "pro-annual"}]}}}}, False),
    ({"dynamodb": {"NewImage": {"plan": {"S": [{"anything-but": {"prefix": "pro"}}]}}}}, False),
    ({"dynamodb": {"NewImage": {"missing": {"S": [{"anything-but": ["x"]}]}}}}, False),
    ({"dynamodb": {"NewImage": {"fullname": [{"exists": False}]}}}, True),
    ({"dynamodb": {"NewImage": {"plan": [{"exists": True}]}}}, True),
    ({"dynamodb": {"OldImage": [{"exists": True}]}}, False),
    ({"dynamodb": {"NewImage": {"age": {"N": [{"numeric": [">", 40, "<=", 42]}]}}}}, True),
    ({"dynamodb": {"NewImage": {"age": {"N": ["42"]}}}}, True),
    ({"dynamodb": {"NewImage": {"age": {"N": [42]}}}}, False),  # DynamoDB numbers are strings
    ({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"plan": {"S": ["free"]}}}}, False),
])
def test_pattern(pattern, expected):
    assert matches(REC, pattern) is expected


def test_filters_are_ored_and_no_filters_match_everything():
    pats = parse_filters({"Filters": [{"Pattern": json.dumps({"eventName": ["REMOVE"]})},
                                      {"Pattern": json.dumps({"eventName": ["INSERT"]})}]})
    assert matches_any(REC, pats) and matches_any(REC, []) and matches_any(REC, parse_filters(None))


@pytest.mark.parametrize("bad", ["{not json", "[1]", json.dumps({"eventName": "INSERT"})])
def test_bad_patterns_are_rejected_clearly(bad):
    with pytest.raises(FilterPatternError):
        parse_filters({"Filters": [{"Pattern": bad}]})
