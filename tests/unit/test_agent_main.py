"""`wasmlet-agent`'s start: glibc's per-thread cache is turned off once, unless the user set it."""

from __future__ import annotations

from wasmlet.nodeagent.main import MALLOC_TUNABLE, malloc_environment


def test_the_agent_starts_again_with_tcache_off_keeping_other_tunables() -> None:
    assert malloc_environment({"A": "1"}, "glibc 2.36") == {"A": "1", "GLIBC_TUNABLES": MALLOC_TUNABLE}
    assert malloc_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "glibc 2.36") == {
        "GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{MALLOC_TUNABLE}"}


def test_no_restart_once_tcache_is_set_by_anyone_or_without_glibc() -> None:
    assert malloc_environment({"GLIBC_TUNABLES": MALLOC_TUNABLE}, "glibc 2.36") is None
    assert malloc_environment({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=7"}, "glibc 2.36") is None  # opted out
    assert malloc_environment({}, None) is None  # musl
