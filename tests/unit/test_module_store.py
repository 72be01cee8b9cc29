"""The content-addressed store: verified, atomic, crash-safe, bounded by LRU that spares held modules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from wasmlet.nodeagent.errors import PullError
from wasmlet.nodeagent.store import BlobStore, Module


def put(store: BlobStore, data: bytes, age: int = 0) -> Module:
    with store.writer() as out:
        out.write(data)
        module = store.commit(out, f"sha256:{hashlib.sha256(data).hexdigest()}", len(data))
    if age:
        stamp = 1_000_000 + age
        os.utime(module.path, (stamp, stamp))
    return module


def names(store: BlobStore) -> list[str]:
    return sorted(p.name for p in store.blobs.iterdir())


def test_a_blob_is_visible_only_once_committed_and_verified(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, 1 << 20)
    with store.writer() as out:
        out.write(b"half a module")
        assert names(store)[0].startswith(".partial-")  # in the store's folder, but not under a digest
        with pytest.raises(PullError, match="digest mismatch: expected sha256:00"):
            store.commit(out, "sha256:" + "0" * 64)
    with store.writer() as out:
        out.write(b"abc")
        with pytest.raises(PullError, match="size mismatch: expected 4 bytes, got 3"):
            store.commit(out, None, 4)
    assert names(store) == []
    module = put(store, b"\0asm")
    assert names(store) == [module.digest[7:]]
    assert store.get(module.digest[7:]) == module


def test_leftovers_of_a_crash_are_swept_at_start(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, 1 << 20)
    (store.blobs / ".partial-abc").write_bytes(b"half")
    (tmp_path / ".partial-index").write_text("{")
    store.remember({"reg/app:v1": "sha256:" + "1" * 64})
    BlobStore(tmp_path, 1 << 20)
    assert names(store) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "sha256"]


def test_a_blob_damaged_on_disk_is_refused_by_the_next_process(tmp_path: Path) -> None:
    module = put(BlobStore(tmp_path, 1 << 20), b"\0asm original")
    module.path.write_bytes(b"\0asm tampered")
    assert BlobStore(tmp_path, 1 << 20).get(module.digest[7:]) is None
    assert not module.path.exists()


def test_eviction_removes_the_least_recently_used_blobs_nobody_holds(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, 250)
    old = put(store, b"a" * 100, age=1)
    middle = put(store, b"b" * 100, age=2)
    new = put(store, b"c" * 100, age=3)
    store.hold("pod-1", old.digest[7:])
    assert store.evict() == [middle.digest[7:]]  # the oldest is held; the next one goes
    assert names(store) == sorted([old.digest[7:], new.digest[7:]])
    store.release("pod-1")
    assert old.path.exists()  # released, but the store fits its cap
    latest = put(store, b"d" * 100, age=4)
    assert store.evict() == [old.digest[7:]]  # now the oldest goes first
    assert names(store) == sorted([new.digest[7:], latest.digest[7:]])


def test_using_a_blob_makes_it_recent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, 250)
    first = put(store, b"a" * 100, age=1)
    second = put(store, b"b" * 100, age=2)
    assert store.get(first.digest[7:]) is not None  # used now: newer than `second`
    put(store, b"c" * 100)
    store.evict()
    assert not second.path.exists() and first.path.exists()


def test_the_reference_index_is_persisted_atomically(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, 1 << 20)
    store.remember({"reg/app:v1": "sha256:" + "1" * 64, "reg/app@sha256:" + "1" * 64: "ab" * 32})
    again = BlobStore(tmp_path, 1 << 20)
    assert again.lookup("reg/app:v1") == "sha256:" + "1" * 64
    assert again.lookup("reg/app:v2") is None
    (tmp_path / "index.json").write_text("{not json")
    assert BlobStore(tmp_path, 1 << 20).lookup("reg/app:v1") is None  # a damaged index is only a cache miss
