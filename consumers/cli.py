"""Command-line entry point of the consumers: ``streamrag consumers``."""

from __future__ import annotations

try:
    from consumers.drift.cli import consumers
except ImportError:  # pragma: no cover - built in another change
    pass
