"""The output guard applied to an answer while it streams: PII redacted, a prompt leak stopped.

Text is held back until it can no longer change a decision: the guard keeps the last
``holdback`` characters (and never cuts inside a possible PII match or a word), so a secret split
across two tokens is redacted before any of it is sent. The cost is that the first text reaches
the client ``holdback`` characters later (about 6-8 tokens at the default 32).
"""

from __future__ import annotations

from collections.abc import Iterable

from serving.guardrails.leak import leaks_prompt
from serving.guardrails.pii import Redaction, find_pii, redact


class AnswerGuard:
    """Feed the generator's pieces in order; send what :meth:`feed` and :meth:`finish` return.

    After a prompt leak is seen, :attr:`leaked` is true and nothing more is returned: the caller
    replaces the answer. :attr:`redactions` lists every PII kind redacted so far.
    """

    def __init__(self, pii_kinds: Iterable[str], holdback: int = 32, check_leak: bool = True) -> None:
        self.kinds = tuple(pii_kinds)
        self.holdback = holdback
        self.check_leak = check_leak
        self.raw = ""
        """Everything the generator produced, unredacted (kept for the leak check only)."""
        self.sent = ""
        """Everything returned so far (redacted): the answer as the client saw it."""
        self.redactions: list[Redaction] = []
        self.leaked = False
        self._pending = ""

    def feed(self, piece: str) -> str:
        if self.leaked:
            return ""
        self.raw += piece
        self._pending += piece
        # Only the tail can complete a new shingle; the text before it was checked already.
        if self.check_leak and leaks_prompt(self.raw[-400:]):
            self.leaked = True
            self._pending = ""
            return ""
        cut = self._safe_cut()
        if cut <= 0:
            return ""
        return self._release(cut)

    def finish(self) -> str:
        """The held-back rest, redacted (empty after a leak)."""
        if self.leaked or not self._pending:
            return ""
        return self._release(len(self._pending))

    def _release(self, cut: int) -> str:
        text, self._pending = self._pending[:cut], self._pending[cut:]
        out, spans = redact(text, self.kinds) if self.kinds else (text, [])
        self.redactions.extend(spans)
        self.sent += out
        return out

    def _safe_cut(self) -> int:
        """The largest prefix length that ends after whitespace, at least ``holdback`` characters
        before the end, and inside no PII match of the pending text."""
        limit = len(self._pending) - self.holdback
        if limit <= 0:
            return 0
        spans = find_pii(self._pending, self.kinds) if self.kinds else []
        for p in range(limit, 0, -1):
            if self._pending[p - 1].isspace() and not any(s.start < p < s.end for s in spans):
                return p
        return 0
