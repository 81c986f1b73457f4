"""The config's JSON Schema, envoy/quota-config.schema.json, checked with a real
JSON Schema validator. `quota-matrix schema` generates it from the filter's own
config types, and matrix/tests/schema.rs keeps the committed file current.

The schema checks shape (types, required fields, no unknown fields), as the
filter's first stage does; meaning (soft below hard, a cell for every class) is
left to the filter and `quota-matrix validate`."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from quota_configs import DEMO_PATH, demo, one_class, sdk_classes

SCHEMA_PATH = DEMO_PATH.parent / "quota-config.schema.json"
FIXTURES = DEMO_PATH.parent.parent / "matrix" / "tests" / "fixtures"
SCHEMA = json.loads(SCHEMA_PATH.read_text())


def error_paths(config):
    """The JSON path of each error, dotted like the filter's."""
    validator = Draft202012Validator(SCHEMA)
    return sorted(".".join(str(p) for p in e.absolute_path) for e in validator.iter_errors(config))


def test_the_schema_is_a_draft_2020_12_schema():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_the_demo_config_validates():
    assert error_paths(demo()) == []


@pytest.mark.parametrize("name", ["features.json", "smells.json"])
def test_the_quota_matrix_fixtures_validate(name):
    assert error_paths(json.loads((FIXTURES / name).read_text())) == []


def test_configs_the_end_to_end_tests_build_validate():
    assert error_paths(one_class(hard=5, soft=2, scope="workspace")) == []


def test_a_string_hard_limit_is_rejected():
    assert error_paths(json.loads((FIXTURES / "string-hard.json").read_text())) == [
        "tiers.free.limits.drafts.hard"
    ]


def test_an_unknown_field_is_rejected_where_it_is():
    assert error_paths(json.loads((FIXTURES / "unknown-field.json").read_text())) == [
        "tiers.free.limits.drafts"
    ]
    config = demo()
    config["usage_endpont"] = "/v1/quota"
    assert error_paths(config) == [""]


def test_missing_required_fields_are_rejected():
    config = demo()
    del config["identity"]["default_tier"]
    del config["classes"][0]["name"]
    assert error_paths(config) == ["classes.0", "identity"]


def test_wrong_types_are_rejected():
    config = demo()
    config["classes"][1]["match"] = {"path": {"exact": "/v1/summaries"}}
    config["tiers"]["pro"]["limits"]["drafts"]["warn_at"] = 0.7
    assert error_paths(config) == ["classes.1.match", "tiers.pro.limits.drafts.warn_at"]


def test_a_value_outside_a_fields_choices_is_rejected():
    # The schema lists the words the filter accepts, so an editor flags a typo.
    config = demo(unreadable_body="strict", counters={"on_error": "fail-closed"})
    config["tiers"]["pro"]["limits"]["drafts"]["at_hard"] = "blok"
    config["tiers"]["pro"]["limits"]["drafts"]["scope"] = "team"
    # (`counters` may be null, so its error stands at the object.)
    assert error_paths(config) == [
        "counters", "tiers.pro.limits.drafts.at_hard", "tiers.pro.limits.drafts.scope", "unreadable_body",
    ]
    # And every word the filter accepts passes.
    for word in ("block", "warn", "degrade", "overage", "queue"):
        config = demo(unreadable_body="strictest", counters={"on_error": "fail_closed"})
        config["tiers"]["pro"]["limits"]["drafts"]["at_hard"] = word
        assert error_paths(config) == [], word


def test_the_sdk_config_and_its_switches_validate():
    config = sdk_classes(upstream_busy={"enabled": True, "statuses": [429, 529], "retry_after": 5},
                         response_headers={"openai_ratelimit": True})
    config["classes"][1]["error_format"] = "anthropic"
    config["copy"] = {"upstream_busy": "Busy: try again in {retry_in}."}
    assert error_paths(config) == []
    config["classes"][1]["error_format"] = "claude"
    config["upstream_busy"]["statuses"] = ["429"]
    # An optional object is one `anyOf` in the schema: its error is reported at the object.
    assert error_paths(config) == ["classes.1.error_format", "upstream_busy"]
