"""The device kit's jar selection: the broker's artifacts by name, natives for Linux x86-64 only."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from bench.device_kit import artifact_name, keeps, repack


@pytest.mark.parametrize(
    ("jar", "name"),
    [
        ("kafka-clients-4.1.1.jar", "kafka-clients"),
        ("kafka-server-common-4.1.1.jar", "kafka-server-common"),
        ("kafka-server-4.1.1.jar", "kafka-server"),
        ("log4j-1.2-api-2.25.2.jar", "log4j-1.2-api"),
        ("zstd-jni-1.5.6-10.jar", "zstd-jni"),
        ("connect-runtime-4.1.1.jar", None),  # Connect is not the broker's
        ("kafka-tools-4.1.1.jar", None),
        ("jetty-server-12.0.22.jar", None),
    ],
)
def test_artifact_name(jar: str, name: str | None) -> None:
    assert artifact_name(jar) == name


@pytest.mark.parametrize(
    ("entry", "kept"),
    [
        ("org/apache/kafka/Foo.class", True),
        ("linux/amd64/libzstd-jni-1.5.6-10.so", True),
        ("org/xerial/snappy/native/Linux/x86_64/libsnappyjava.so", True),
        ("net/jpountz/util/linux/amd64/liblz4-java.so", True),
        ("linux/aarch64/libzstd-jni-1.5.6-10.so", False),
        ("org/xerial/snappy/native/Linux/android-aarch64/libsnappyjava.so", False),
        ("net/jpountz/util/win32/amd64/liblz4-java.so", False),
        ("darwin/x86_64/libzstd-jni-1.5.6-10.dylib", False),
        ("win/amd64/libzstd-jni-1.5.6-10.dll", False),
    ],
)
def test_only_linux_x86_64_natives_are_kept(entry: str, kept: bool) -> None:
    assert keeps(entry) is kept


def test_repack_stores_what_it_keeps_and_drops_foreign_natives(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.jar", tmp_path / "b.jar"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("A.class", b"\xca\xfe" * 100)
        z.writestr("linux/amd64/libx.so", b"elf")
        z.writestr("darwin/aarch64/libx.dylib", b"macho")
    assert repack(src, dst) == 1
    with zipfile.ZipFile(dst) as z:
        assert z.namelist() == ["A.class", "linux/amd64/libx.so"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        assert z.read("A.class") == b"\xca\xfe" * 100
