"""PII and secrets in generated text: find them and replace each with ``[redacted <kind>]``.

Numbers that look like card or bank numbers are only redacted when their checksum holds (Luhn for
cards, with an issuer prefix and the usual grouping; ISO 7064 mod 97 for IBANs), so version
strings, dates, sizes and hex dumps in documentation pass.
Phone numbers need an international ``+`` prefix or the North American ``(555) 123-4567`` shape
and 10 to 15 digits. Secrets are the shapes their issuers document (AWS access key ids, GitHub,
Slack, Stripe, OpenAI-style and Google API keys, JWTs, PEM private keys, ``Bearer`` tokens).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 IBAN check digits (mod 97 == 1), spaces ignored."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] = lambda _m: True


DETECTORS: Final[tuple[Detector, ...]] = (
    Detector(
        "private_key",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    ),
    Detector("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    Detector("api_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),  # AWS access key id
    Detector("api_key", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{60,255}\b")),
    Detector("api_key", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),  # Slack
    Detector("api_key", re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b")),  # Stripe
    Detector("api_key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}")),  # OpenAI / Anthropic style
    Detector("api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),  # Google
    Detector("api_key", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*")),
    Detector("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    Detector(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
        iban_ok,
    ),
    # Issuer prefixes (Visa, Mastercard, Discover; Amex 15 digits) in the groupings cards are written
    # in, and Luhn: long numbers in documentation (bitmasks, counters, hex dumps) do not pass.
    Detector(
        "card",
        re.compile(
            r"\b(?:4\d{3}|5[1-5]\d{2}|2[2-7]\d{2}|6011|65\d{2})(?:([ -]?)\d{4})(?:\1\d{4}){2}\b|\b3[47]\d{2}([ -]?)\d{6}\2\d{5}\b"
        ),
        lambda m: luhn_ok(_digits(m)),
    ),
    Detector(
        "phone",
        re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}\b|\(\d{3}\) ?\d{3}[ .-]\d{4}\b"),
        lambda m: 10 <= len(_digits(m)) <= 15,
    ),
)

#: Every kind, in the order they are applied (a key inside an email-like string is a key).
KINDS: Final[tuple[str, ...]] = tuple(dict.fromkeys(d.kind for d in DETECTORS))


@dataclass(frozen=True, slots=True)
class Redaction:
    kind: str
    start: int
    end: int


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[Redaction]:
    """Non-overlapping spans to redact, leftmost first; earlier detectors win an overlap."""
    wanted = set(kinds)
    spans: list[Redaction] = []
    for det in DETECTORS:
        if det.kind not in wanted:
            continue
        for m in det.pattern.finditer(text):
            if not det.valid(m.group(0)):
                continue
            if any(m.start() < r.end and r.start < m.end() for r in spans):
                continue
            spans.append(Redaction(det.kind, m.start(), m.end()))
    return sorted(spans, key=lambda r: r.start)


def redact(text: str, kinds: Iterable[str] = KINDS) -> tuple[str, list[Redaction]]:
    """``text`` with each span of :func:`find_pii` replaced by ``[redacted <kind>]``."""
    spans = find_pii(text, kinds)
    if not spans:
        return text, []
    out, at = [], 0
    for r in spans:
        out.append(text[at : r.start])
        out.append(f"[redacted {r.kind}]")
        at = r.end
    out.append(text[at:])
    return "".join(out), spans
