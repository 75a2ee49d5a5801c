"""The top layer: the ``streamrag`` command line and the all-in-one local process.

Everything below it (the core ``streamrag`` package, the pipelines ``producers``, ``streams``,
``consumers``, ``training``, ``serving``, and the local ``stack``) is imported from here and never
imports it back; ``make lint`` checks the layers with import-linter.
"""
