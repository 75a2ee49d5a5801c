"""Rich rendering of lag and freshness reports for ``streamrag lag`` (one table, totals per group)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from serving.lag.models import FreshnessReport, GroupLag, LagReport
from serving.lag.status import Status

STATUS_STYLES: dict[Status, str] = {
    Status.OK: "green",
    Status.LAGGING: "yellow",
    Status.STALLED: "dark_orange",
    Status.STOPPED: "bold red",
    Status.REWOUND: "bold magenta",
}


def render(report: LagReport, freshness: FreshnessReport | None, error: str | None = None) -> RenderableType:
    """The lag table, then a freshness/DLQ line and, if the last sample failed, the error."""
    parts: list[RenderableType] = [lag_table(report)]
    if freshness is not None:
        parts.append(freshness_line(freshness))
    if error:
        parts.append(Text(f"last sample failed: {error}", style="red"))
    return Group(*parts)


def lag_table(report: LagReport) -> Table:
    """One row per partition and a bold total row per group (total lag, max lag seconds, status)."""
    table = Table(
        title=(
            f"Consumer lag at {report.sampled_at:%Y-%m-%d %H:%M:%S} UTC "
            f"(window {report.window_s:g} s, stopped after {report.stopped_after_s:g} s, "
            f"{report.samples} sample{'s' if report.samples != 1 else ''})"
        ),
        title_justify="left",
    )
    table.add_column("GROUP", overflow="fold")
    table.add_column("TOPIC", overflow="fold")
    table.add_column("PART", justify="right")
    table.add_column("COMMITTED", justify="right")
    table.add_column("LOG-END", justify="right")
    table.add_column("LAG", justify="right")
    table.add_column("LAG (s)", justify="right")
    table.add_column("STATUS")
    if not report.groups:
        table.add_row("(no groups)", "", "", "", "", "", "", "")
    for group in report.groups:
        for part in group.partitions:
            table.add_row(
                group.group,
                part.topic,
                str(part.partition),
                "-" if part.committed_offset is None else str(part.committed_offset),
                str(part.log_end_offset),
                str(part.lag),
                _seconds(part.lag_seconds),
                Text(part.status.value, style=STATUS_STYLES[part.status]),
            )
        _total_row(table, group)
    return table


def freshness_line(report: FreshnessReport) -> Text:
    """``freshness (last 15 min, N records): p50 .. p95 .. p99 ..  |  DLQ topic: depth D, R msg/s``."""
    stats = report.overall
    text = Text()
    text.append(f"freshness {report.topic} (last {report.lookback_s / 60:g} min, {stats.count} records): ")
    if stats.count:
        text.append(
            f"p50 {_seconds(stats.p50_s)} s  p95 {_seconds(stats.p95_s)} s  p99 {_seconds(stats.p99_s)} s"
        )
    else:
        text.append("no records", style="dim")
    if report.error:
        text.append(f" ({report.error})", style="red")
    dlq = report.dlq
    text.append("  |  ")
    if dlq.exists:
        style = "red" if dlq.depth else "green"
        text.append(f"DLQ {dlq.topic}: depth {dlq.depth}, {dlq.rate_per_s:.3g} msg/s", style=style)
    else:
        text.append(f"DLQ {dlq.topic}: missing", style="dim")
    return text


def _total_row(table: Table, group: GroupLag) -> None:
    detail = f"TOTAL ({len(group.partitions)} partitions, {group.state}, {group.members} members)"
    table.add_row(
        Text(group.group, style="bold"),
        Text(detail, style="bold"),
        "",
        "",
        "",
        Text(str(group.total_lag), style="bold"),
        Text(_seconds(group.max_lag_seconds), style="bold"),
        Text(group.status.value, style=f"bold {STATUS_STYLES[group.status]}"),
        end_section=True,
    )
    for error in group.errors:
        table.add_row(group.group, Text(error, style="red"), "", "", "", "", "", "", end_section=True)


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"
