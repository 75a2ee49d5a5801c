"""Answering the eval questions as the API does and scoring the answers (``streamrag eval --answers``).

Each question is retrieved for, filtered at the API's relevance threshold, packed into the API's
prompt at the API's token budget and answered by the configured generator (the embedded llama.cpp
server unless ``STREAMRAG_TGI_URL`` is set) with the API's decoding settings, streamed, so time to
first token and decode speed are measured as a user sees them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from serving.eval.answers import cited, loops, reference_answer, says_dont_know, token_f1
from serving.eval.live import TENANT
from serving.generation.client import Generator
from serving.generation.prompt import DONT_KNOW, build_prompt
from serving.retrieval.search import relevant
from serving.settings import ApiSettings


@dataclass
class AnswerOutcome:
    query_id: str
    answerable: bool
    answer: str
    looped: bool
    gold_in_context: bool
    """Retrieval put a gold document into the prompt (without it the answer cannot cite one)."""
    gold_cited: bool
    f1: float
    dont_know: bool
    ttft_s: float | None
    tokens_per_s: float | None


@dataclass
class AnswerReport:
    outcomes: list[AnswerOutcome] = field(default_factory=list)

    def _mean(self, values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    def __str__(self) -> str:
        ok = [o for o in self.outcomes if o.answerable]
        no = [o for o in self.outcomes if not o.answerable]
        ttft = [o.ttft_s for o in self.outcomes if o.ttft_s is not None]
        rate = [o.tokens_per_s for o in self.outcomes if o.tokens_per_s]
        return "\n".join(
            [
                f"answers: {len(ok)} answerable, {len(no)} unanswerable questions",
                f"  loop rate            {self._mean([float(o.looped) for o in ok]):.3f}",
                f"  gold in the prompt   {self._mean([float(o.gold_in_context) for o in ok]):.3f}",
                f"  gold citation rate   {self._mean([float(o.gold_cited) for o in ok]):.3f} "
                f"({self._mean([float(o.gold_cited) for o in ok if o.gold_in_context]):.3f} where in the prompt)",
                f"  token-F1 (reference) {self._mean([o.f1 for o in ok]):.3f}",
                f"  don't know, answerable (wrongly) {self._mean([float(o.dont_know) for o in ok]):.3f}",
                f"  don't know, unanswerable         {self._mean([float(o.dont_know) for o in no]):.3f}",
                f"  TTFT median {statistics.median(ttft) if ttft else float('nan'):.2f} s, "
                f"decode median {statistics.median(rate) if rate else float('nan'):.1f} tokens/s",
            ]
        )


def _interleave_sources(queries: list[Any], n: int) -> list[Any]:
    by_source: dict[str, list[Any]] = {}
    for q in queries:
        by_source.setdefault(q.source, []).append(q)
    out: list[Any] = []
    while len(out) < n and any(by_source.values()):
        for qs in by_source.values():
            if qs and len(out) < n:
                out.append(qs.pop(0))
    return out


def answer_report(
    corpus: Any, retriever: Any, n: int, unanswerable: list[Any], original: dict[str, str], echo: Any = print
) -> AnswerReport:
    """Answer ``n`` answerable questions (Debian FAQ and man pages alternating) and the unanswerable ones."""
    from serving.llm.launch import start_llm

    settings = ApiSettings()
    server = None if settings.tgi_url else start_llm(settings.llm_port)
    docs = {d.doc_id: d for d in corpus.documents}
    questions = [(q, True) for q in _interleave_sources(corpus.queries, n)] + [
        (q, False) for q in unanswerable
    ]
    report = AnswerReport()

    async def answer_all() -> None:
        generator = Generator.from_settings(settings)
        for i, (q, answerable) in enumerate(questions, start=1):
            hits = relevant(retriever.search(q.text, TENANT, 4).hits, settings.min_score)
            prompt = build_prompt(q.text, hits, retriever.encoder.count_tokens, settings.context_token_budget)
            start = time.perf_counter()
            first: float | None = None
            pieces: list[str] = []
            if prompt.used:
                async for piece in generator.stream(prompt.messages, settings.max_new_tokens):
                    first = first if first is not None else time.perf_counter() - start
                    pieces.append(piece)
            answer = "".join(pieces) if prompt.used else DONT_KNOW
            elapsed = time.perf_counter() - start
            used = [original.get(h.doc_id, h.doc_id) for h in prompt.used]
            gold = set(q.relevant_doc_ids)
            gold_cited = any(1 <= c <= len(used) and used[c - 1] in gold for c in cited(answer))
            ref = reference_answer(docs[q.relevant_doc_ids[0]].body) if answerable else ""
            rate = (len(pieces) - 1) / (elapsed - first) if first is not None and len(pieces) > 1 else None
            outcome = AnswerOutcome(q.query_id, answerable, answer, loops(answer), bool(gold & set(used)), gold_cited,
                                    token_f1(answer, ref) if answerable else 0.0, says_dont_know(answer),
                                    first, rate)  # fmt: skip
            report.outcomes.append(outcome)
            echo(
                f"  [{i}/{len(questions)}] {'answerable' if answerable else 'unanswerable'} "
                f"{'LOOP ' if outcome.looped else ''}{'gold-cited ' if gold_cited else ''}"
                f"{'dont-know ' if outcome.dont_know else ''}ttft {first or 0:.1f}s: {q.text[:60]!r} -> {answer[:100]!r}"
            )

    try:
        asyncio.run(answer_all())
    finally:
        if server is not None:
            server.stop()
    return report
