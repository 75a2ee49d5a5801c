"""Consumer lag and freshness monitoring: offsets, Burrow-style status, freshness, DLQ, CLI, API routes.

Entry points: :class:`serving.lag.monitor.LagMonitor` (sampling, history, Prometheus metrics),
:func:`serving.lag.router.lag_router` (FastAPI routes and the dashboard) and
:data:`serving.lag.cli.lag` (``streamrag lag``). Submodules are imported lazily by their users so
that ``import serving.lag`` stays cheap.
"""
