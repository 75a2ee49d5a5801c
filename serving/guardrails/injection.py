"""Prompt-injection rules: text that tries to change what the model does or make it reveal things.

The same rules screen the user's question (input) and every retrieved chunk (context): a document
is data that anyone with write access to a source table can change, so a chunk that speaks to the
model ("ignore the previous instructions", a forged ``<|im_start|>system`` turn, "reveal the
system prompt", "show other tenants' documents") is treated like a hostile question.

Each rule is a regular expression over a normalised copy of the text (case-folded, whitespace
collapsed, zero-width characters removed, common look-alikes mapped), named so a decision in a
trace says which one fired. The rules aim at the imperative forms of an attack; documentation
that *describes* such text in the third person ("the shell ignores previous settings") must not
match, and the false-positive rate on real Debian documentation and questions is measured
(bench/guardrails.py, bench/RESULTS.md).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

_ZERO_WIDTH: Final = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
# Letters an attacker swaps in to dodge a filter (Cyrillic and Greek look-alikes).
_LOOKALIKE: Final = str.maketrans(
    {
        "\u0430": "a",
        "\u0435": "e",
        "\u043e": "o",
        "\u0440": "p",
        "\u0441": "c",
        "\u0445": "x",
        "\u0456": "i",
        "\u03bf": "o",
        "\u03b9": "i",
        "\u0455": "s",
    }
)

_VERB = r"(?:ignore|disregard|forget|override|bypass)"
_WHOSE = r"(?:(?:all|any|every)\s+)?(?:of\s+)?(?:(?:the|your|my|these|those|its)\s+)?"
_WHICH = r"(?:(?:previous|prior|above|preceding|earlier|former|initial|original|system|safety|existing)\s+)?"
_INSTRUCTIONS = r"(?:instructions?|rules|directions|directives?|guidelines|prompts?|guardrails|restrictions)"
_SECRET_THING = (
    r"(?:system|initial|hidden|secret|original|developer|internal)\s+(?:prompt|instructions?|message|rules)"
)

#: (rule name, pattern) in the order they are tried; names appear in traces and metrics.
RULES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("ignore_instructions", rf"\b{_VERB}\s+{_WHOSE}{_WHICH}{_INSTRUCTIONS}\b"),
        (
            "ignore_instructions",
            r"\b(?:ignore|disregard|forget)\s+(?:all\s+)?(?:of\s+)?(?:the\s+|everything\s+)?"
            r"(?:above|previous|prior|preceding)\s*(?:[.,;:!]|$|and\b|then\b)",
        ),
        (
            "new_instructions",
            r"\b(?:new|updated|real|actual|true)\s+(?:system\s+)?instructions?\s*(?::|follow|are)",
        ),
        (
            "reveal_prompt",
            rf"\b(?:reveal|print|show|repeat|output|display|leak|dump|recite|tell me|give me|what (?:is|are|was|were))\s+"
            rf"(?:me\s+)?(?:your|the|its)\s+(?:full\s+|exact\s+|entire\s+|complete\s+)?{_SECRET_THING}",
        ),
        (
            "reveal_prompt",
            r"\b(?:repeat|print|output|recite)\s+(?:everything|all(?: the text)?|the text|the words)\s+"
            r"(?:above|before|preceding|so far)\b",
        ),
        ("role_marker", r"<\|?\s*(?:im_start|im_end|system|endoftext|eot_id|start_header_id)\s*\|?>"),
        ("role_marker", r"\[/?(?:inst|sys)\]|<<\s*/?sys\s*>>|#{2,}\s*(?:system|instructions?)\s*:"),
        (
            "role_marker",
            r"(?:^|\n|[.!?] )\s*(?:system|assistant|developer)\s*(?:prompt)?\s*:\s*(?:you|ignore|from now|new)",
        ),
        (
            "role_play",
            r"\b(?:you are now (?:an? |in |called |named |free |dan\b|my |the |going to |unrestricted|jailbroken)|from now on,? you(?: are|'re| will)|pretend (?:that )?you(?: are|'re)|"
            r"act as (?:if you (?:were|are|had) )?(?:an? )?(?:unrestricted|unfiltered|jailbroken|evil|different|"
            r"uncensored)|roleplay as|enter (?:developer|debug|god|dan) mode|developer mode (?:enabled|on)|"
            r"\bdan\b(?= (?:mode|prompt|jailbreak))|do anything now|jailbreak)",
        ),
        (
            "role_play",
            r"\byou (?:are going to|will|must|shall|should) (?:now )?(?:act|behave|respond|answer|pretend|roleplay|role-play)"
            r" (?:as|like)\b|\b(?:have|do|play) a role-?play\b|\bdeveloper[_ ]mode\b|\bstay in character\b",
        ),
        (
            "restrictions_off",
            r"\b(?:free (?:of|from)|not bound by|without|no longer (?:bound|limited) by|disregards?|ignores?|break(?:s|ing)? free of)"
            r" (?:all |any |the |its |your )?(?:of )?(?:\w+'s )?(?:ethical|moral|content|safety|openai|legal)"
            r"(?:,? (?:or |and )?(?:ethical|moral|content|safety|legal))* (?:\w+ )?(?:filters?|restrictions?|guidelines?|"
            r"limitations?|constraints?|values|rules|polic(?:y|ies)|settings|boundaries|principles|considerations|concerns)\b|"
            r"\bunfilt(?:e)?red (?:ai|model|chatbot|assistant|version|response)",
        ),
        (
            "other_tenants",
            r"\b(?:other|another|all|every|different)\s+(?:tenants?|customers?|users?|accounts?)(?:'s|')?\s+"
            r"(?:data|documents?|files?|records?|secrets?|information|conversations?|questions?)",
        ),
        (
            "exfiltrate",
            r"\b(?:send|post|upload|forward|exfiltrate|email)\s+(?:it|this|them|the (?:answer|conversation|data|"
            r"prompt|context))\s+to\s+(?:https?://|\S+@\S+)",
        ),
        ("exfiltrate", r"!\[[^\]]*\]\(\s*https?://[^)]*(?:\?|&)[^)]*=\s*\{"),
        (
            "override_answer",
            r"\b(?:always|only)\s+(?:answer|reply|respond|say)\s+(?:with\s+)?[\"'«]|"
            r"\b(?:instead|rather),?\s+(?:answer|reply|respond|say|output|write)\s+(?:with\s+|only\s+)?[\"'«]",
        ),
    )
)


@dataclass(frozen=True, slots=True)
class InjectionHit:
    rule: str
    excerpt: str
    """The matched text (normalised), at most 80 characters."""


def normalise(text: str) -> str:
    """The form the rules read: NFKC, look-alikes mapped, zero-width gone, lower case, one space."""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).lower().translate(_LOOKALIKE)
    return re.sub(r"[ \t\r\f\v]+", " ", text)


def find_injection(text: str) -> InjectionHit | None:
    """The first rule ``text`` matches, or None."""
    norm = normalise(text)
    for name, pattern in RULES:
        m = pattern.search(norm)
        if m is not None:
            return InjectionHit(name, m.group(0)[:80])
    return None
