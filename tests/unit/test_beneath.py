"""Paths opened beneath a volume: fuzzed trees of directories and symbolic links, and a link
flipping on another thread while the agent opens the path (fixed seeds: a failure replays)."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from wasmlet.nodeagent.runtime.beneath import (
    TooLarge,
    UnsafePath,
    _walk,
    ensure_dir_beneath,
    open_dir_beneath,
    open_root,
    regular_files,
)

SEEDS = range(40)
NAMES = ("a", "b", "c", "sub")


def plant_tree(rng: random.Random, root: Path, outside: Path) -> None:
    """A random tree of directories, files and links; the links point out, up, inside or nowhere."""
    targets = [str(outside), "../" * 12 + str(outside).lstrip("/"), "..", "../..", ".", "a", "a/b", "missing",
               "/etc", "/proc/self/root"]
    frontier = [root]
    for _ in range(rng.randint(3, 14)):
        parent = rng.choice(frontier)
        name = rng.choice(NAMES)
        path = parent / name
        if path.exists() or path.is_symlink():
            continue
        kind = rng.random()
        if kind < 0.45:
            path.mkdir()
            frontier.append(path)
        elif kind < 0.6:
            path.write_text("inside\n")
        else:
            path.symlink_to(rng.choice(targets))


def random_rel(rng: random.Random) -> str:
    return "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 4)))


def has_link_on_the_way(root: Path, rel: str) -> bool:
    path = root
    for part in rel.split("/"):
        path = path / part
        if path.is_symlink():
            return True
    return False


def opened_path(fd: int) -> Path:
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory a Pod must never reach: its contents are checked untouched after each case."""
    canary = tmp_path / "host-secret"
    canary.mkdir()
    (canary / "marker").write_text("HOST-SECRET\n")
    return canary


Opener = Callable[[int, str], int]
OPENERS: dict[str, Opener] = {
    "openat2": open_dir_beneath,
    "walk": lambda fd, rel: _walk(fd, tuple(rel.split("/"))),  # the path taken without openat2
    "ensure": ensure_dir_beneath,
}


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_path_through_a_link_is_refused_and_any_other_stays_in_its_volume(
        tmp_path: Path, outside: Path, seed: int, opener: str) -> None:
    rng = random.Random(seed)
    root = tmp_path / "volume"
    root.mkdir()
    plant_tree(rng, root, outside)
    root_fd = open_root(root, follow=False)
    try:
        for _ in range(25):
            rel = random_rel(rng)
            linked = has_link_on_the_way(root, rel)
            try:
                fd = OPENERS[opener](root_fd, rel)
            except UnsafePath as refused:
                assert str(outside) not in str(refused) and str(tmp_path) not in str(refused)
                continue
            try:
                assert not linked, f"{rel!r} was opened through a link"
                assert opened_path(fd) == root.joinpath(*rel.split("/"))
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    assert sorted(p.name for p in outside.iterdir()) == ["marker"]


def test_the_root_of_a_volume_may_not_itself_be_a_link_unless_it_is_a_host_path(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "volume").symlink_to(outside)
    with pytest.raises(OSError):
        open_root(tmp_path / "volume", follow=False)
    fd = open_root(tmp_path / "volume", follow=True)  # hostPath: the node's administrator named it
    os.close(fd)


@pytest.mark.parametrize("rel", ["/etc", "../x", "a/../../x"])
def test_an_absolute_path_or_dot_dot_is_refused_before_any_lookup(tmp_path: Path, rel: str) -> None:
    fd = open_root(tmp_path, follow=False)
    try:
        with pytest.raises(UnsafePath, match="relative path without '..'"):
            open_dir_beneath(fd, rel)
    finally:
        os.close(fd)


@pytest.mark.parametrize("opener", OPENERS)
def test_a_link_flipped_in_on_another_thread_is_never_followed(tmp_path: Path, outside: Path, opener: str) -> None:
    root = tmp_path / "volume"
    (root / "sub.real").mkdir(parents=True)
    (root / "sub.real" / "marker").write_text("inside\n")
    target = "../" * 12 + str(outside).lstrip("/")
    stop = threading.Event()

    def flip() -> None:
        sub, spare = root / "sub", root / "sub.real"
        while not stop.is_set():
            for step in (lambda: spare.rename(sub), lambda: sub.rename(spare), lambda: sub.symlink_to(target),
                         lambda: sub.unlink()):
                try:
                    step()
                except OSError:
                    pass

    flipper = threading.Thread(target=flip)
    flipper.start()
    opened = refused = 0
    root_fd = open_root(root, follow=False)
    try:
        for _ in range(3000):
            try:
                fd = OPENERS[opener](root_fd, "sub")
            except UnsafePath:
                refused += 1
                continue
            try:
                assert opened_path(fd).parent == root
                assert os.listdir(fd) in ([], ["marker"])  # the volume's directory (or one "ensure" made)
                opened += 1
            finally:
                os.close(fd)
    finally:
        stop.set()
        flipper.join()
        os.close(root_fd)
    assert opened + refused == 3000
    assert sorted(p.name for p in outside.iterdir()) == ["marker"]


def test_regular_files_are_read_and_a_link_anywhere_is_refused(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "volume"
    (root / "conf" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (root / "conf" / "deep" / "b.txt").write_text("b\n")
    os.mkfifo(root / "conf" / "pipe")  # skipped without being opened: opening it would block
    fd = open_root(root, follow=False)
    try:
        assert dict(regular_files(fd, 1024)) == {"a.txt": b"a\n", "conf/deep/b.txt": b"b\n"}
        with pytest.raises(TooLarge):
            list(regular_files(fd, 3))
        (root / "conf" / "deep" / "secret").symlink_to(outside / "marker")
        with pytest.raises(UnsafePath, match="'conf/deep/secret' is a symbolic link"):
            list(regular_files(fd, 1024))
    finally:
        os.close(fd)


def test_a_file_swapped_for_a_link_while_files_are_read_is_never_followed(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    for index in range(50):
        (root / f"f{index:02}").write_text("inside\n")
    stop = threading.Event()

    def swap() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            name = root / f"f{rng.randrange(50):02}"
            try:
                name.unlink()
                name.symlink_to(outside / "marker")
                name.unlink()
                name.write_text("inside\n")
            except OSError:
                pass

    swapper = threading.Thread(target=swap)
    swapper.start()
    fd = open_root(root, follow=False)
    try:
        for _ in range(300):
            try:
                contents = {data for _, data in regular_files(fd, 1 << 20)}
            except UnsafePath:
                continue
            assert contents <= {b"inside\n", b""}
    finally:
        stop.set()
        swapper.join()
        os.close(fd)
