"""The pytest plugin, used as a user would: through pytester in a fresh test session."""

from __future__ import annotations

import pytest


@pytest.mark.timeout(120)
def test_plugin_fixtures_and_helper(pytester):
    pytester.makepyfile(
        """
        from slither.testing import isolated_vs_threaded

        _seen = {}

        def count(x):
            _seen[x] = _seen.get(x, 0) + 1
            return x * 2

        def test_pool_fixture(slither_pool, slither_store):
            slither_store.put("t", "k", 1)
            assert slither_pool.map(abs, [-1, -2]) == [1, 2]
            assert slither_store.get("t", "k") == 1

        def test_helper(slither_pool):
            iso, thr = isolated_vs_threaded(count, range(100), pool=slither_pool, threads=4)
            assert iso.mode == "isolated" and thr.mode == "threaded"
            assert iso.results == [x * 2 for x in range(100)] == thr.results
            assert not iso.errors and not thr.errors
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
