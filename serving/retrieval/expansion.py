"""Optional query rewriting with the generator: expansion and self-query. Off by default on CPU.

* Expansion: the generator restates the question as a short keyword query; both the question and
  the rewrite are searched and their rankings fused, so a poor rewrite can add hits but never
  remove the original query's.
* Self-query: the generator extracts metadata filters from the question, restricted to the
  fields the operator allows (``ApiSettings.self_query_fields``); anything else it says is
  ignored, so it can narrow a search only along declared fields, and the tenant filter stays.
"""

from __future__ import annotations

import json
import re
from typing import Any

EXPAND_PROMPT = (
    "Rewrite the question as one short search query of key terms, without explanation.\n"
    "Question: {question}\nSearch query:"
)
SELF_QUERY_PROMPT = (
    "Extract filters from the question as a JSON object whose keys are among {fields}. "
    "Use only values that appear in the question. If there are none, answer {{}}.\n"
    "Question: {question}\nJSON:"
)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_VALUE = re.compile(r"^[\w .:/@+-]{1,128}$")


def clean_expansion(text: str, question: str) -> str | None:
    """The first line of the model's rewrite, or None when it is empty or just the question."""
    line = text.strip().splitlines()[0].strip().strip('"') if text.strip() else ""
    if not line or line.lower() == question.strip().lower() or len(line) > 300:
        return None
    return line


def parse_filters(text: str, allowed: list[str]) -> dict[str, str | int | bool]:
    """Filters from the model's answer: the first JSON object, allowed keys, scalar values only."""
    match = _JSON_OBJECT.search(text)
    if not match:
        return {}
    try:
        data: Any = json.loads(match.group(0))
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, str | int | bool] = {}
    for key, value in data.items():
        if key not in allowed:
            continue
        if isinstance(value, bool | int) or (isinstance(value, str) and _VALUE.match(value)):
            out[key] = value
    return out


async def expand(generator: Any, question: str, max_new_tokens: int = 24) -> str | None:
    messages = [{"role": "user", "content": EXPAND_PROMPT.format(question=question)}]
    return clean_expansion(await generator.complete(messages, max_new_tokens), question)


async def self_query(
    generator: Any, question: str, fields: list[str], max_new_tokens: int = 48
) -> dict[str, Any]:
    if not fields:
        return {}
    messages = [{"role": "user", "content": SELF_QUERY_PROMPT.format(fields=fields, question=question)}]
    return parse_filters(await generator.complete(messages, max_new_tokens), fields)
