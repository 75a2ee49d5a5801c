"""Command-line entry point of the consumers: ``streamrag consumers``."""

from consumers.drift.cli import consumers

__all__ = ["consumers"]
