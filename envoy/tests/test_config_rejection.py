"""An invalid config is refused: Envoy does not start, and its log names the
JSON path and the reason."""

import json

from quota_configs import one_class


def test_a_hard_limit_below_soft_is_refused_with_its_path(envoy_expect_failure):
    config = one_class(hard=20, soft=21)
    log = envoy_expect_failure(config)
    assert "quota: invalid configuration: tiers.free.limits.drafts.hard: must be greater than soft (21)" in log


def test_an_unknown_field_is_refused_with_its_path(envoy_expect_failure):
    config = one_class()
    config["tiers"]["free"]["limits"]["drafts"]["hadr"] = 5
    log = envoy_expect_failure(config)
    assert "quota: invalid configuration: tiers.free.limits.drafts.hadr: unknown field `hadr`" in log


def test_text_that_is_not_json_is_refused(envoy_expect_failure):
    log = envoy_expect_failure("limits: 5")
    assert "quota: invalid configuration: .: the configuration must be a JSON object" in log


def test_a_field_written_twice_is_refused_with_its_path(envoy_expect_failure):
    # The last value would win silently in most JSON readers: the filter refuses.
    text = json.dumps(one_class(hard=30, soft=20))
    assert text.count('"hard": 30') == 1
    log = envoy_expect_failure(text.replace('"hard": 30', '"hard": 30, "hard": 3000'))
    assert "quota: invalid configuration: tiers.free.limits.drafts.hard: duplicate field `hard`" in log
