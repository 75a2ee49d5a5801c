"""A user's own labelled corpus, one JSON object a line, for ``streamrag eval --study --corpus FILE``.

Each line is either a document or a question::

    {"doc_id": "guide/install", "title": "Installing", "body": "To install ..."}
    {"question": "How do I install it?", "relevant": ["guide/install"]}

``title`` is optional. A question's ``relevant`` lists the ids of the documents that answer it
(at least one, each a document of the file). Errors name the line and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

from serving.eval.schema import Corpus, CorpusError, EvalDocument, EvalQuery


def load_user_corpus(path: Path) -> Corpus:
    """The corpus in ``path`` (see the module docstring); :class:`CorpusError` naming the bad line."""
    source = path.stem
    documents: list[EvalDocument] = []
    queries: list[EvalQuery] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise CorpusError(f"{where}: a line must be a JSON object")
        if "question" in row:
            relevant = row.get("relevant")
            if not isinstance(row["question"], str) or not row["question"].strip():
                raise CorpusError(f"{where}: 'question' must be a non-empty string")
            if (
                not isinstance(relevant, list)
                or not relevant
                or not all(isinstance(r, str) for r in relevant)
            ):
                raise CorpusError(f"{where}: 'relevant' must be a non-empty list of doc ids")
            queries.append(EvalQuery(f"q{number}", row["question"], list(relevant), source))
        elif "doc_id" in row:
            if not isinstance(row["doc_id"], str) or not row["doc_id"]:
                raise CorpusError(f"{where}: 'doc_id' must be a non-empty string")
            if not isinstance(row.get("body"), str):
                raise CorpusError(f"{where}: 'body' must be a string")
            documents.append(EvalDocument(row["doc_id"], str(row.get("title") or ""), row["body"], source))
        else:
            raise CorpusError(f"{where}: a line needs 'doc_id' (a document) or 'question' (a question)")
    corpus = Corpus(sorted(documents, key=lambda d: d.doc_id), sorted(queries, key=lambda q: q.query_id))
    return corpus.check()
