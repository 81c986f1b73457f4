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
