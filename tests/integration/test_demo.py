"""`streamrag demo` (what `make demo` runs) end to end on the real stack, as a user runs it.

It writes Debian FAQ rows to PostgreSQL, indexes their CDC events, answers a question with
citations, then follows an UPDATE and a DELETE of a row. Its own embedded store (a temp folder),
so it does not touch the checkout's data.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from serving.eval.answers import cited, loops, words


def test_demo_answers_with_citations_and_follows_update_and_delete(stack: Any, tmp_path: Path) -> None:
    env = {**os.environ, "STREAMRAG_QDRANT__PATH": str(tmp_path / "qdrant"), "STREAMRAG_LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert re.search(r"^\s+\[1\] debian-faq:\S+ v\d+ chunk \d+", text, re.M), text[-3000:]  # a citation
    # The answer is a sentence that does not loop and cites the document the question is about.
    expected = re.search(r"expected source: (\S+)", text)
    answer = re.search(r"answer: (.*?)\n\s+\[1\]", text, re.S)
    assert expected and answer, text[-3000:]
    assert not loops(answer.group(1)), answer.group(1)
    assert len(words(answer.group(1))) >= 5, answer.group(1)
    citations = dict(re.findall(r"^\s+\[(\d+)\] (\S+) v\d+ chunk", text, re.M))
    assert any(citations.get(str(n)) == expected.group(1) for n in cited(answer.group(1))), text[-3000:]
    updated = re.search(r"after UPDATE: (.*)$", text, re.M)
    deleted = re.search(r"after DELETE: (.*)$", text, re.M)
    assert updated and deleted, text[-3000:]
    assert "'deleted': False" in updated.group(1) and "'chunk_count': 1" in updated.group(1)
    assert "'deleted': True" in deleted.group(1) and "'chunk_count': 0" in deleted.group(1)
