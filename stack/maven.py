"""Resolving the stack's jars from Maven Central into the project cache, once."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

from stack.errors import StackError
from stack.settings import StackSettings

#: Each artifact set: the pom that declares it and the folder its jars are copied to.
ARTIFACT_SETS = {
    "kafka": "kafka",  # broker, tools, Connect runtime -> lib/kafka
    "debezium": "plugins/debezium-connector-postgres",  # a Connect plugin -> lib/plugins/...
}


def require_binary(name: str, what: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{what} ('{name}') was not found on PATH. Install it with: {install_hint}")
    return path


def pom_path(artifact_set: str) -> Path:
    return Path(str(resources.files("stack") / "maven" / artifact_set / "pom.xml"))


def jars_dir(settings: StackSettings, artifact_set: str) -> Path:
    return settings.lib_dir / ARTIFACT_SETS[artifact_set]


#: Written into a set's folder once all its jars are there: a copy cut short is never taken as one.
COMPLETE_MARKER = ".complete"


def jars_present(settings: StackSettings, artifact_set: str) -> bool:
    """Whether the set's jars were copied completely (the marker is written last)."""
    return (jars_dir(settings, artifact_set) / COMPLETE_MARKER).exists()


def mark_complete(folder: Path) -> None:
    (folder / COMPLETE_MARKER).write_text("ok\n")


def artifact_sets(kafka_only: bool = False) -> tuple[str, ...]:
    """The artifact sets the stack needs: all of them, or the broker's alone."""
    return ("kafka",) if kafka_only else tuple(ARTIFACT_SETS)


def ensure_jars(settings: StackSettings, log=print, sets: tuple[str, ...] | None = None) -> None:
    """Copy the artifact sets' runtime jars (all of them by default) into the cache; a set
    already there is kept.

    The Maven local repository is the project's own (``.cache/m2``) so CI can cache it.
    """
    for artifact_set in sets or artifact_sets():
        target = jars_dir(settings, artifact_set)
        if jars_present(settings, artifact_set):
            continue
        mvn = require_binary(
            settings.mvn, "Apache Maven", "apt-get install -y maven (and a JDK: default-jdk-headless)"
        )
        require_binary(settings.java, "Java", "apt-get install -y default-jdk-headless")
        log(f"resolving {artifact_set} jars from Maven Central into {target} ...")
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            "-q",
            f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
            "-f",
            str(pom_path(artifact_set)),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(
                f"Maven could not resolve the {artifact_set} jars (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-3000:]}"
            )
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(target)
        mark_complete(target)


def classpath(settings: StackSettings) -> str:
    return str(jars_dir(settings, "kafka") / "*")
