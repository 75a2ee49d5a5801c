"""Command-line entry points of the consumers: ``streamrag lag`` and ``streamrag consumers``."""

from __future__ import annotations

try:
    from consumers.lag.cli import lag
except ModuleNotFoundError:  # pragma: no cover - built in another change
    pass
try:
    from consumers.drift.cli import consumers
except ModuleNotFoundError:  # pragma: no cover
    pass
