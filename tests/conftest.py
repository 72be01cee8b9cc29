"""Suite-wide guards: warnings are errors (pyproject), every test has a timeout (pyproject), and
an asyncio test that leaves tasks running fails. tests/e2e is collected only when
WASMLET_E2E_KUBECONFIG names a disposable real cluster, so it is never silently skipped."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest

pytest_plugins = ["tests.fixtures.plugin"]

collect_ignore_glob: list[str] = []
if not os.environ.get("WASMLET_E2E_KUBECONFIG"):
    collect_ignore_glob.append("e2e/*")


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks behind: every task must be awaited or cancelled."""
    before = asyncio.all_tasks()
    yield
    for _ in range(3):  # let tasks that are finishing their cancellation settle
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
    if leaked:
        for task in leaked:
            task.cancel()
        await asyncio.gather(*leaked, return_exceptions=True)
        pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {[t.get_coro() for t in leaked]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without native finalizers once wasmer-sdk is loaded (see `wasmlet.nodeagent.main.exit_now`):
    its threads occasionally abort the interpreter at exit (status 134) after every test passed."""
    if "wasmer_sdk" in sys.modules and _EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[_EXIT_STATUS])


_EXIT_STATUS = pytest.StashKey[int]()
