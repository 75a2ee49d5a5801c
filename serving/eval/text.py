"""Word and sentence splitting shared by the BM25 baseline and the answer-support metric.

Deliberately simple and deterministic (no stemming, no language model): the same text always gives
the same tokens, so metric values are reproducible across machines.
"""

from __future__ import annotations

import re

# A token is a run of letters/digits, optionally joined by inner '_' , '.' , '-' or '+' so that
# identifiers such as ``dpkg-deb``, ``apt.conf``, ``pg_dump`` or ``c++`` stay one token.
_TOKEN = re.compile(r"[0-9a-z]+(?:[_.+\-][0-9a-z]+)*\+*")
# A sentence ends at '.', '!' or '?' followed by whitespace and an upper-case letter, digit or quote,
# or at a blank line. Abbreviations like "e.g. foo" do not split because a lower-case word follows.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n\s*\n")

# A short English stopword list (function words only, so content words of queries survive).
_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each either else etc few
    for from further get gets got had has have having he her here hers herself him himself his how i
    if in into is it its itself just least less let like may me might more most much must my myself
    neither no nor not now of off often on once one only or other others otherwise our ours ourselves
    out over own per perhaps rather same shall she should since so some such than that the their
    theirs them themselves then there these they this those though through thus to too under until
    up upon us use used uses using very via was we well were what whatever when where whether which
    while who whom whose why will with within without would yes yet you your yours yourself
    yourselves
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``, in order, stopwords included."""
    return _TOKEN.findall(text.lower())


def content_words(text: str) -> list[str]:
    """:func:`tokens` without stopwords and without single characters, in order."""
    return [t for t in tokens(text) if len(t) > 1 and t not in STOPWORDS]


def sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (see ``_SENTENCE_END``), stripped, empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]
