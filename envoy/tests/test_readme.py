"""The README's complete config example is the demo config, so it stays true."""

import json
import re

from quota_configs import DEMO_PATH

README = DEMO_PATH.parent.parent / "README.md"


def test_the_readme_shows_the_demo_config_as_it_is():
    text = README.read_text()
    after = text.split("The complete demo configuration, `envoy/demo-config.json`:", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", after, re.S).group(1)
    assert json.loads(block) == json.loads(DEMO_PATH.read_text())


def test_the_readmes_cors_policy_is_the_tested_example():
    """Each setting of the CORS policy the README shows is the one of
    envoy/examples/cors.yaml, which test_cors.py runs."""
    text = README.read_text()
    section = text.split("### A browser app on another origin (CORS)", 1)[1]
    shown = re.search(r"```yaml\n(.*?)\n```", section, re.S).group(1)
    example = (DEMO_PATH.parent / "examples" / "cors.yaml").read_text()

    def settings(yaml_text):
        keys = ("allow_methods", "allow_headers", "expose_headers", "max_age",
                "forward_not_matching_preflights")
        found = {}
        for line in yaml_text.splitlines():
            key, _, value = line.strip().partition(":")
            if key in keys:
                found[key] = value.strip()
        return found

    assert settings(shown) == settings(example)
    assert len(settings(shown)) == 5
