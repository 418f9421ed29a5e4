"""Shared helpers: every test runs its coroutine with asyncio.run under a
bound, so that a hang fails the test instead of the run."""

import asyncio

import pytest

#: The most any one test's coroutine may take, in seconds.
TEST_BOUND = 90


def run(coro):
    """Runs ``coro`` on a fresh loop, failing after TEST_BOUND seconds."""
    return asyncio.run(asyncio.wait_for(coro, TEST_BOUND))


async def until(predicate, what, timeout=20.0, every=0.02):
    """Polls ``predicate`` (sync or async) until it is true; fails after
    ``timeout`` seconds naming ``what``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)
