"""Image layers: one `.wasm` comes out, nothing hostile is accepted, decompression is bounded."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.oci.layers import choose, copy_member, wasm_files

MODULE = b"\0asm\x01\0\0\0" + b"\x00" * 24
LIMIT = 1 << 20


def layer(tmp: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]], compress: bool = True) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                archive.addfile(info, io.BytesIO(entry[1]))
    path = tmp / "layer"
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue())
    return path


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def extract(path: Path, name: str) -> bytes:
    out = io.BytesIO()
    copy_member(path, name, out.write, LIMIT)
    return out.getvalue()


@pytest.mark.parametrize("compress", [True, False], ids=["tar.gz", "tar"])
def test_the_one_wasm_file_of_a_layer_comes_out_byte_for_byte(tmp_path: Path, compress: bool) -> None:
    path = layer(tmp_path, [special("app", tarfile.DIRTYPE), ("./app/main.wasm", MODULE), ("etc/conf", b"x")],
                 compress)
    names = wasm_files(path, LIMIT)
    assert names == ["app/main.wasm"]
    assert extract(path, choose(names, None)) == MODULE


def test_the_entrypoint_chooses_among_several_modules_and_must_exist() -> None:
    assert choose(["a.wasm", "bin/b.wasm"], "bin/b.wasm") == "bin/b.wasm"
    with pytest.raises(PullError, match="holds 2 .wasm files and its config names none"):
        choose(["a.wasm", "bin/b.wasm"], None)
    with pytest.raises(PullError, match="entrypoint /c.wasm is not in its layer"):
        choose(["a.wasm"], "c.wasm")
    with pytest.raises(PullError, match="holds no .wasm file"):
        choose([], None)


@pytest.mark.parametrize(("entry", "problem"), [
    (("../evil.wasm", MODULE), "points outside the layer"),
    (("a/b/../../../evil.wasm", MODULE), "points outside the layer"),
    (("/abs/evil.wasm", MODULE), "absolute path"),
    (special("link.wasm", tarfile.SYMTYPE, "/etc/shadow"), "is a link"),
    (special("relative-link", tarfile.SYMTYPE, "app.wasm"), "is a link"),
    (special("hard.wasm", tarfile.LNKTYPE, "app.wasm"), "is a link"),
    (special("dev", tarfile.CHRTYPE), "special file"),
    (special("fifo", tarfile.FIFOTYPE), "special file"),
], ids=["dotdot", "deep-dotdot", "absolute", "symlink-out", "symlink-in", "hardlink", "device", "fifo"])
def test_a_layer_with_a_hostile_entry_is_rejected_as_a_whole(
        tmp_path: Path, entry: tarfile.TarInfo | tuple[str, bytes], problem: str) -> None:
    path = layer(tmp_path, [("app.wasm", MODULE), entry])
    with pytest.raises(PullError, match=f"layer rejected: .*{problem}"):
        wasm_files(path, LIMIT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer"]  # nothing extracted anywhere


def test_a_gzip_bomb_is_stopped_by_ratio_before_it_is_read_to_the_end(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("app.wasm")
        info.size = 32 << 20
        archive.addfile(info, io.BytesIO(bytes(info.size)))
    path = tmp_path / "bomb"
    path.write_bytes(gzip.compress(raw.getvalue(), 9))
    with pytest.raises(PullError, match=r"more than 100:1 \(a gzip bomb\)"):
        wasm_files(path, 64 << 20)


def test_a_layer_or_member_over_the_limit_is_too_large(tmp_path: Path) -> None:
    path = layer(tmp_path, [("app.wasm", MODULE + bytes(2048))], compress=False)
    with pytest.raises(PullError, match="'app.wasm' is too large"):
        wasm_files(path, 1024)
    many = layer(tmp_path, [(f"f{i}", bytes(900)) for i in range(2000)])  # each small, together large
    with pytest.raises(PullError, match="unpacks to more than"):
        wasm_files(many, 512 * 1024)


def test_what_is_not_a_tar_is_not_a_wasm_artifact_and_zstd_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0asm" + bytes(2000))  # a bare module where a tar should be
    with pytest.raises(PullError, match="not a wasm artifact: the layer is not a tar archive"):
        wasm_files(junk, LIMIT)
    whole = layer(tmp_path, [("a.wasm", os.urandom(50_000)), ("b.wasm", os.urandom(50_000))]).read_bytes()
    truncated = tmp_path / "truncated"
    truncated.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(PullError, match="corrupt layer: Compressed file ended"):
        wasm_files(truncated, LIMIT)
    zstd = tmp_path / "zstd"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(20))
    with pytest.raises(PullError, match="zstd-compressed layers are not supported"):
        wasm_files(zstd, LIMIT)
