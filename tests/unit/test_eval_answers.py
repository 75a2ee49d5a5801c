"""Answer measures of streamrag eval --answers (serving.eval.answers)."""

from __future__ import annotations

import pytest

from serving.eval.answers import (
    cited,
    loops,
    reference_answer,
    repeated_4gram_share,
    says_dont_know,
    token_f1,
)


def test_a_looping_answer_is_recognised() -> None:
    looped = "The answer to your question is: " * 6
    plain = "Debian is a free operating system developed by volunteers [1]. It uses dpkg [2]."

    assert loops(looped) and repeated_4gram_share(looped) > 0.7
    assert not loops(plain) and repeated_4gram_share(plain) == 0.0
    assert repeated_4gram_share("too short") == 0.0


def test_citations_are_read_in_order_of_first_use() -> None:
    assert cited("See [2] and [1], again [2].") == [2, 1]
    assert cited("No sources.") == []


def test_token_f1_ignores_case_punctuation_and_citations() -> None:
    assert token_f1("Debian uses dpkg [1].", "debian uses DPKG") == pytest.approx(1.0)
    assert token_f1("apt", "dpkg") == 0.0
    assert 0 < token_f1("Debian uses apt", "Debian uses dpkg") < 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I don't know.", True),
        ("I do not know what you mean.", True),
        ("The documents say dpkg installs packages [1].", False),
    ],
)
def test_abstention_is_detected(text: str, expected: bool) -> None:
    assert says_dont_know(text) is expected


def test_the_reference_is_the_opening_of_the_section() -> None:
    assert reference_answer("one two three four", max_words=2) == "one two"
