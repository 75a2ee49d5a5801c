"""``python -m consumers.drift run``: the same as ``streamrag consumers run``."""

from consumers.drift.cli import consumers

if __name__ == "__main__":
    consumers()
