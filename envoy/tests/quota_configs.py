"""Filter configurations for the end-to-end tests: the demo matrix, and small
one-class configs whose limits a test can reach in a few requests."""

import copy
import json
from pathlib import Path

DEMO_PATH = Path(__file__).resolve().parent.parent / "demo-config.json"
CHAT = "/v1/chat/completions"


def demo(**top_level):
    """The demo matrix (envoy/demo-config.json), with top-level keys replaced."""
    config = json.loads(DEMO_PATH.read_text())
    config.update(copy.deepcopy(top_level))
    return config


def one_class(*, hard=3, soft=None, window="day", scope="user", at_hard="block",
              tiers=("free",), **top_level):
    """A `drafts` class on POST /v1/chat/completions with the same cell in every tier."""
    cell = {"hard": hard, "window": window, "scope": scope, "at_hard": at_hard}
    if soft is not None:
        cell["soft"] = soft
    config = {
        "identity": {
            "user": [{"header": "x-user-id"}],
            "workspace": [{"header": "x-workspace-id"}],
            "tier": [{"header": "x-plan"}],
            "default_tier": tiers[0],
        },
        "classes": [{"name": "drafts", "label": "Drafts", "unit": "draft",
                     "match": [{"methods": ["POST"], "path": {"exact": CHAT}}]}],
        "tiers": {t: {"limits": {"drafts": dict(cell)}} for t in tiers},
        "usage_endpoint": "/v1/quota",
    }
    config.update(top_level)
    return config


def chat(model="gpt-4o"):
    return {"model": model, "messages": [{"role": "user", "content": "Draft a note to the team."}]}
