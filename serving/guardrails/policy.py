"""The guardrail policy of the answer path, in three layers, each decision recorded.

1. **Input**: a question that matches an injection rule (prompt extraction, role play, "ignore
   your instructions", other tenants' data) is refused before anything reaches the generator.
2. **Context**: retrieved chunks are quoted data in the prompt (``serving.generation.prompt``),
   and a chunk that matches an injection rule is *dropped* from the prompt. Dropped rather than
   neutralised: a 1.5B model follows instructions it reads however they are framed, and cutting
   out the matched words leaves the rest of the attack (its target, its payload) in place. The
   document stays searchable; its owner sees the decision in the trace and in ``/metrics``.
3. **Output**: PII and secrets in the answer are redacted while it streams (kinds per tenant), an
   answer that reproduces the fixed prompt is replaced by a refusal, and an answer that cites no
   provided source while context existed (or cites a number it was not given) is flagged, and
   replaced by "I don't know" when :attr:`GuardrailSettings.replace_ungrounded` is on.

Every decision is a :class:`streamrag.contracts.GuardrailDecision` (stage, rule, action, target)
that goes into the request's trace and the ``streamrag_guardrail_decisions_total`` counter.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator

from serving.guardrails.citations import check_citations
from serving.guardrails.injection import find_injection
from serving.guardrails.pii import KINDS
from serving.guardrails.stream import AnswerGuard
from streamrag.contracts import GuardrailDecision

if TYPE_CHECKING:
    from serving.retrieval.search import Hit

REFUSAL = (
    "I can't help with that: the question asks me to change or reveal my instructions, or to reach "
    "data outside your documents."
)
Stage = Literal["input", "context", "output"]
Action = Literal["refuse", "drop", "redact", "flag", "replace"]


class GuardrailSettings(BaseModel):
    """``STREAMRAG_GUARDRAILS__<FIELD>``; per-tenant PII kinds as JSON, e.g.
    ``STREAMRAG_GUARDRAILS__PII_BY_TENANT='{"acme": ["email", "card"]}'``."""

    enabled: bool = Field(default=True, description="All three layers; off only to measure their cost.")
    refuse_injected_questions: bool = True
    drop_injected_chunks: bool = True
    pii: list[str] = Field(
        default_factory=lambda: list(KINDS),
        description=f"PII kinds redacted from answers, of {', '.join(KINDS)}.",
    )
    pii_by_tenant: dict[str, list[str]] = Field(
        default_factory=dict, description="Tenant -> PII kinds, replacing `pii` for that tenant ([] = none)."
    )
    replace_ungrounded: bool = Field(
        default=False,
        description="Replace an answer that cites no provided source (while context existed) by "
        '"I don\'t know"; off, it is only flagged in the trace and the response.',
    )
    stream_holdback_chars: int = Field(
        default=32,
        ge=0,
        le=512,
        description="Characters held back while streaming so a secret split across tokens is redacted "
        "before any of it is sent.",
    )

    @field_validator("pii")
    @classmethod
    def _known(cls, kinds: list[str]) -> list[str]:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; known: {list(KINDS)}")
        return kinds

    @field_validator("pii_by_tenant")
    @classmethod
    def _known_per_tenant(cls, by_tenant: dict[str, list[str]]) -> dict[str, list[str]]:
        for tenant, kinds in by_tenant.items():
            unknown = sorted(set(kinds) - set(KINDS))
            if unknown:
                raise ValueError(f"tenant {tenant!r}: unknown PII kinds {unknown}; known: {list(KINDS)}")
        return by_tenant


def chunk_target(hit: Hit) -> str:
    return f"{hit.doc_id}@{hit.version}#{hit.chunk_index}"


def decision(stage: Stage, rule: str, action: Action, target: str, detail: str = "") -> GuardrailDecision:
    return GuardrailDecision(stage=stage, rule=rule, action=action, target=target, detail=detail[:500])


class Guardrails:
    """The policy for one API process; methods return the decisions they took."""

    def __init__(self, settings: GuardrailSettings) -> None:
        self.settings = settings

    def check_question(self, question: str) -> GuardrailDecision | None:
        """A refusal decision when the question is an injection attempt, else None."""
        s = self.settings
        if not (s.enabled and s.refuse_injected_questions):
            return None
        hit = find_injection(question)
        if hit is None:
            return None
        return decision("input", f"injection.{hit.rule}", "refuse", "question", hit.excerpt)

    def screen_context(self, hits: list[Hit]) -> tuple[list[Hit], list[GuardrailDecision]]:
        """The hits that may go into the prompt, and a drop decision for each one that may not."""
        s = self.settings
        if not (s.enabled and s.drop_injected_chunks):
            return hits, []
        kept, decisions = [], []
        for h in hits:
            found = find_injection(h.text) or (
                find_injection(h.parent_text) if h.parent_text != h.text else None
            )
            if found is None:
                kept.append(h)
            else:
                decisions.append(
                    decision("context", f"injection.{found.rule}", "drop", chunk_target(h), found.excerpt)
                )
        return kept, decisions

    def pii_kinds(self, tenant: str) -> list[str]:
        if not self.settings.enabled:
            return []
        return self.settings.pii_by_tenant.get(tenant, self.settings.pii)

    def answer_guard(self, tenant: str) -> AnswerGuard:
        s = self.settings
        return AnswerGuard(
            self.pii_kinds(tenant), holdback=s.stream_holdback_chars if s.enabled else 0, check_leak=s.enabled
        )

    def judge_answer(self, guard: AnswerGuard, sources: int) -> tuple[list[GuardrailDecision], str | None]:
        """Decisions on a finished answer, and its replacement text (None: keep the answer).

        A prompt leak is replaced by the refusal; an ungrounded answer is flagged, and replaced by
        "I don't know" (the caller's text) when ``replace_ungrounded`` is on: returned as ``""``.
        """
        out: list[GuardrailDecision] = []
        for kind, n in Counter(r.kind for r in guard.redactions).items():
            out.append(decision("output", f"pii.{kind}", "redact", "answer", f"{n} redacted"))
        if not self.settings.enabled:
            return out, None
        if guard.leaked:
            out.append(
                decision("output", "prompt_leak", "replace", "answer", "the answer reproduced the prompt")
            )
            return out, REFUSAL
        check = check_citations(guard.sent, sources)
        if not check.flagged:
            return out, None
        rule = "citation.unknown_source" if check.unknown else "citation.none"
        detail = (
            f"cited {check.unknown} of {sources} sources"
            if check.unknown
            else f"no citation of {sources} sources"
        )
        if self.settings.replace_ungrounded:
            out.append(decision("output", rule, "replace", "answer", detail))
            return out, ""
        out.append(decision("output", rule, "flag", "answer", detail))
        return out, None
