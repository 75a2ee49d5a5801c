"""``streamrag lag``: consumer lag, status, freshness and dead letters, as a table or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from importlib import resources

import click
from rich.console import Console
from rich.live import Live

from serving.lag.kafkaconf import KAFKA_LOG
from serving.lag.models import LagReport, MonitorReport
from serving.lag.monitor import LagMonitor
from serving.lag.offsets import KafkaUnavailable
from serving.lag.settings import LagSettings
from serving.lag.table import render

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_ERROR = 2

ONE_SHOT_GAP_S = 3.0
"""Default seconds between the two samples of a run without --watch: what the status is judged on."""
WATCH_INTERVAL_S = 2.0
"""Default seconds between refreshes with --watch."""


def schema_text() -> str:
    """The JSON Schema of the --json output (``serving/lag/schema.json``)."""
    return (resources.files("serving.lag") / "schema.json").read_text()


@click.command("lag")
@click.option(
    "--group",
    "-g",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Report only this group (repeatable). Default: the project's groups and every group on the cluster.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see below) instead of a table.")
@click.option("--watch", is_flag=True, help="Keep sampling and refresh the table in place until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="S",
    help=f"Seconds between samples: the refresh period with --watch (default {WATCH_INTERVAL_S:g}), "
    f"else the gap between the two samples taken (default {ONE_SHOT_GAP_S:g}).",
)
@click.option("--no-freshness", is_flag=True, help="Skip the features topic and the dead-letter topic.")
@click.option("--schema", "show_schema", is_flag=True, help="Print the JSON Schema of --json and exit.")
def lag(
    groups: tuple[str, ...],
    as_json: bool,
    watch: bool,
    interval: float | None,
    no_freshness: bool,
    show_schema: bool,
) -> None:
    """Consumer-group lag per partition, group status, end-to-end freshness and DLQ depth.

    \b
    Per partition: committed offset, log-end offset (high watermark), LAG in messages
    (log-end - committed; everything in the log when nothing is committed) and LAG (s),
    the age of the oldest unconsumed message. Nothing joins the groups or commits.

    \b
    Status per partition over a sliding window (STREAMRAG_LAG__WINDOW_S, default 120 s);
    a group shows its worst partition:
      OK       caught up, or lag not growing
      LAGGING  lag > 0 and growing over the window
      STALLED  lag > 0 and committed offset unchanged over the whole window
      STOPPED  lag > 0 and committed offset unchanged for STREAMRAG_LAG__STOPPED_AFTER_S (300 s)
      REWOUND  committed offset moved back within the window
    Without --watch two samples are taken --interval apart (3 s) and the window is that gap:
    a group with lag whose committed offset did not move between them is STALLED, never OK
    (one look cannot show progress). --watch and the API's monitor (GET /v1/lag) judge over
    the full window.

    \b
    Freshness: p50/p95/p99 of indexed_ts - source_ts over the features records of the last
    STREAMRAG_LAG__FRESHNESS_LOOKBACK_S (900 s); DLQ: messages in the dead-letter topic and
    messages/s appended over STREAMRAG_LAG__DLQ_RATE_WINDOW_S (300 s).

    \b
    --json prints one object (one per line with --watch) valid against the JSON Schema in
    serving/lag/schema.json (print it with --schema):
      {"schema_version": 1,
       "lag": {"sampled_at", "samples", "window_s", "stopped_after_s", "ok",
               "groups": [{"group", "state", "members", "status", "status_code", "total_lag",
                           "max_lag_seconds", "errors",
                           "partitions": [{"topic", "partition", "committed_offset",
                                           "log_start_offset", "log_end_offset", "lag",
                                           "lag_seconds", "status", "reason"}]}]},
       "freshness": {"topic", "sampled_at", "lookback_s", "bucket_s", "invalid_records",
                     "error", "overall": {"count", "p50_s", "p95_s", "p99_s", "max_s"},
                     "windows": [...same + "start", "end"],
                     "dlq": {"topic", "exists", "depth", "rate_per_s", "window_s"}} | null}
    status_code: 0 OK, 1 LAGGING, 2 STALLED, 3 STOPPED, 4 REWOUND.

    \b
    Exit codes:
      0  every reported group is OK
      1  at least one group is not OK (with --watch: in the last sample before Ctrl-C)
      2  error: Kafka cannot be reached (STREAMRAG_KAFKA__BOOTSTRAP_SERVERS) or bad usage
    """
    if show_schema:
        click.echo(schema_text(), nl=False)
        return
    # librdkafka retries a dead broker every 50 ms, logging each; the one error line below says it.
    KAFKA_LOG.addHandler(logging.NullHandler())
    KAFKA_LOG.propagate = False
    settings = LagSettings()
    if groups:
        settings.lag = settings.lag.model_copy(update={"groups": list(groups), "discover_groups": False})
    gap_s = interval or (WATCH_INTERVAL_S if watch else ONE_SHOT_GAP_S)
    if not watch:  # two samples are all the history there is: judge progress over their gap
        settings.lag = settings.lag.model_copy(update={"window_s": min(settings.lag.window_s, gap_s)})
    monitor = LagMonitor(settings, freshness=not no_freshness)
    try:
        code = _watch(monitor, as_json, gap_s) if watch else _once(monitor, as_json, gap_s)
    except KafkaUnavailable as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        code = EXIT_ERROR
    finally:
        monitor.close()
    sys.exit(code)


def _once(monitor: LagMonitor, as_json: bool, gap_s: float) -> int:
    # Two samples: trends (LAGGING, REWOUND) need two points; freshness reads once per sample anyway.
    monitor.sample()
    time.sleep(gap_s)
    report = monitor.sample()
    _emit(monitor, as_json, _console())
    return EXIT_OK if report.ok else EXIT_NOT_OK


def _watch(monitor: LagMonitor, as_json: bool, interval_s: float) -> int:
    """Sample every ``interval_s`` until Ctrl-C; a failed sample is shown and retried, not fatal."""
    console = _console()
    report = monitor.sample()  # the first one must work: an unreachable cluster is exit code 2
    try:
        if as_json:
            _emit(monitor, True, console)
            while True:
                time.sleep(interval_s)
                new = _try_sample(monitor)
                if new is None:
                    click.echo(f"warning: sample failed: {monitor.last_error}", err=True)
                    continue
                report = new
                _emit(monitor, True, console)
        with Live(render(report, monitor.freshness_report()), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval_s)
                report = _try_sample(monitor) or report
                live.update(render(report, monitor.freshness_report(), monitor.last_error), refresh=True)
    except KeyboardInterrupt:
        pass
    return EXIT_OK if report.ok else EXIT_NOT_OK


def _try_sample(monitor: LagMonitor) -> LagReport | None:
    try:
        return monitor.sample()
    except KafkaUnavailable:
        return None  # monitor.last_error says why


def _console() -> Console:
    console = Console()
    # Piped output has no terminal width; 80 columns would fold topic names mid-word.
    return console if console.is_terminal else Console(width=160)


def _emit(monitor: LagMonitor, as_json: bool, console: Console) -> None:
    report = monitor.report()
    freshness = monitor.freshness_report()
    if as_json:
        doc = MonitorReport(lag=report, freshness=freshness)
        # Plain print: rich would wrap and highlight the JSON.
        print(json.dumps(doc.model_dump(mode="json")), flush=True)
    else:
        console.print(render(report, freshness))


if __name__ == "__main__":  # ``python -m serving.lag.cli`` until ``streamrag lag`` is wired to this command
    lag()
