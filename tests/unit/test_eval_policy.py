"""Debian Policy Manual parsing and labelling rules, on reStructuredText shaped like the manual's."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.eval.policy import inline_text, load_policy, parse_sections, source_files
from serving.eval.schema import SourceMissingError

FILLER = "This sentence pads the section so that it is long enough to be kept as a document."

CHAPTER = f"""Binary packages
===============

The distribution is based on ``dpkg``. {FILLER}

.. _s3.1:

The package name
----------------

Every package must have a name, see :ref:`s-f-Package` and the
:ref:`binary control file <s-binarycontrolfiles>`. {FILLER} [#]_

.. index::
   single: package name

.. [#] A footnote's text stays readable.

``Source``
~~~~~~~~~~

A one-word heading: a document, but no question. {FILLER}

Too short
~~~~~~~~~

Tiny.

Example
-------

.. code-block:: sh

    dpkg --list

The example is ambiguous because another section has the same heading. {FILLER}
"""

OTHER = f"""Source packages
===============

Intro. {FILLER}

Example
-------

A second "Example" section: neither is a question. {FILLER}
"""


@pytest.fixture()
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "ch-binary.rst.txt").write_text(CHAPTER)
    (tmp_path / "ch-source.rst.txt").write_text(OTHER)
    (tmp_path / "upgrading-checklist.rst.txt").write_text("Checklist\n=========\n\n" + FILLER)
    return tmp_path


def test_sections_follow_the_adornment_levels() -> None:
    sections = parse_sections(CHAPTER)
    assert [(s.level, s.heading) for s in sections] == [
        (1, "Binary packages"),
        (2, "The package name"),
        (3, "Source"),
        (3, "Too short"),
        (2, "Example"),
    ]


def test_markup_is_reduced_to_the_words_a_reader_sees() -> None:
    name = parse_sections(CHAPTER)[1].text
    assert "binary control file" in name  # a role's explicit text is kept
    assert "s-f-Package" not in name and ":ref:" not in name  # a bare ref would quote another heading
    assert "[#]" not in name and "index::" not in name and "single: package name" not in name
    assert "A footnote's text stays readable." in name
    assert "dpkg --list" in parse_sections(CHAPTER)[4].text  # literal blocks stay
    assert (
        inline_text("the ``Depends`` field, *must* and `DFSG <https://x>`_")
        == "the Depends field, must and DFSG"
    )


def test_headings_label_their_sections(policy_dir: Path) -> None:
    documents, queries = load_policy(policy_dir)
    by_id = {d.doc_id: d for d in documents}
    assert "debian-policy/upgrading-checklist#1" not in by_id  # a changelog, left out
    assert all(d.title in {"Binary packages", "Source packages"} for d in documents)  # never the heading
    assert {q.text for q in queries} == {"The package name"}  # one-word, ambiguous and short ones are not
    (query,) = queries
    assert by_id[query.relevant_doc_ids[0]].body.startswith("Every package must have a name")
    assert "Too short" not in {d.body for d in documents} and len(documents) == 4  # "Tiny." dropped


def test_a_missing_manual_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(SourceMissingError, match="apt-get install -y debian-policy"):
        source_files(tmp_path)
