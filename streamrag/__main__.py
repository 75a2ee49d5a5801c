"""``python -m streamrag``: the ``streamrag`` command (the app layer's CLI). An entry point only:
nothing imports this module, so the core still depends on nothing above it."""

from app.cli import main

main()
