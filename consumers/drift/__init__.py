"""Drift detection over the feature (document embedding) and query streams.

Modules, one job each:

* :mod:`~consumers.drift.detectors`: the statistics (MMD² permutation test, mean-drop, rate-rise); pure numpy.
* :mod:`~consumers.drift.windows`: reference and current windows per (tenant, kind), kept in a mapping
  (a Faust table in production) so they survive a restart.
* :mod:`~consumers.drift.observations`: contract records -> compact observations, and back.
* :mod:`~consumers.drift.evaluate`: which detector runs for which kind, and the :class:`DriftEvent` it yields.
* :mod:`~consumers.drift.settings`: :class:`DriftSettings`.
* :mod:`~consumers.drift.app`: the Faust app wiring it together.
* :mod:`~consumers.drift.cli`: ``streamrag consumers run``.
"""
