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
        **({"tier_order": list(tiers)} if len(tiers) > 1 else {}),
        "usage_endpoint": "/v1/quota",
    }
    config.update(top_level)
    return config


def chat(model="gpt-4o"):
    return {"model": model, "messages": [{"role": "user", "content": "Draft a note to the team."}]}


# The largest max_body_bytes the filter accepts (the README's config reference).
MAX_BODY_BYTES_LIMIT = 64 * 1024 * 1024


def body_classes(**top_level):
    """Two classes on POST /v1/chat/completions told apart by the body's model,
    so the filter reads every body: `research` (model o3-deep-research, the
    smaller limit, so the strictest class) before `chat`. Limits no test
    reaches: only the body decides."""
    config = {
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "pro"},
        "classes": [
            {"name": "research", "label": "Research", "unit": "research call",
             "match": [{"methods": ["POST"], "path": {"exact": CHAT},
                        "body": [{"field": "model", "equals": "o3-deep-research"}]}]},
            {"name": "chat", "label": "Chat", "unit": "chat",
             "match": [{"methods": ["POST"], "path": {"exact": CHAT}}]},
        ],
        "tiers": {"pro": {"limits": {
            "research": {"hard": 1_000_000, "window": "day"},
            "chat": {"hard": 2_000_000, "window": "day"},
        }}},
        "hold_headers_for_body": True,
    }
    config.update(copy.deepcopy(top_level))
    return config


MESSAGES = "/v1/messages"


def sdk_classes(**top_level):
    """What the official SDKs call: `drafts` on OpenAI's chat completions
    (3 a day) and `messages` on Anthropic's Messages API (2 a day, answered
    in Anthropic's error envelope by its path), with the usage endpoint."""
    config = {
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
        "classes": [
            {"name": "drafts", "label": "Drafts", "unit": "draft",
             "match": [{"methods": ["POST"], "path": {"exact": CHAT}}]},
            {"name": "messages", "label": "Messages", "unit": "message",
             "match": [{"methods": ["POST"], "path": {"exact": MESSAGES}}]},
        ],
        "tiers": {"free": {"limits": {
            "drafts": {"hard": 3, "window": "day"},
            "messages": {"hard": 2, "window": "day"},
        }}},
        "usage_endpoint": "/v1/quota",
    }
    config.update(copy.deepcopy(top_level))
    return config
