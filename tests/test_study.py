"""`streamrag eval --study` end to end on a user's JSONL corpus: real MiniLM, real Qdrant Edge, the
pipeline's own chunking; no Kafka (the study measures ranking)."""

from __future__ import annotations

import json
from pathlib import Path

from app.study import run_study_cli
from serving.eval.corpus import build_corpus


def test_the_study_scores_each_variant_on_a_users_corpus(tmp_path: Path) -> None:
    faq = build_corpus(sources=["debian-faq"])
    docs = faq.documents[:12]
    ids = {d.doc_id for d in docs}
    questions = [q for q in faq.queries if set(q.relevant_doc_ids) <= ids]
    assert len(questions) >= 8
    corpus = tmp_path / "mine.jsonl"
    with corpus.open("w") as f:
        for d in docs:
            f.write(json.dumps({"doc_id": d.doc_id, "title": d.title, "body": d.body}) + "\n")
        for q in questions:
            f.write(json.dumps({"question": q.text, "relevant": q.relevant_doc_ids}) + "\n")
    out, said = tmp_path / "rows.jsonl", []
    code = run_study_cli(
        None, [corpus], ["defaults", "tokens 128/32"], ["defaults", "dense", "sparse"], None, out, said.append
    )
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["index"], r["query"]) for r in rows} == {
        (i, q) for i in ("defaults", "tokens 128/32") for q in ("defaults", "dense", "sparse")
    }
    for r in rows:
        m = r["metrics"]
        assert r["corpus"] == "mine" and r["queries"] == len(questions) and r["chunks"] >= len(docs)
        assert 0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1
    dense = next(r for r in rows if (r["index"], r["query"]) == ("defaults", "dense"))
    assert dense["metrics"]["recall@5"] >= 0.8  # 12 documents: the right one is found
    assert any(line.startswith("| corpus | index | query |") for line in said)  # the table is printed
    assert run_study_cli(None, [corpus], ["no such index"], [], None, None, said.append) == 2
    assert "unknown index variants" in said[-1]
