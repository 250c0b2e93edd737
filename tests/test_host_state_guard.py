"""The project's conftest fails a test run that leaves the host changed."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from cnisdk.testing import require_netns

CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"


@pytest.mark.netns
def test_a_run_that_leaves_a_namespace_behind_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_netns()
    monkeypatch.setenv("CNISDK_HOST_STATE_CHECK", "1")
    name = f"cnisdk-leak-{secrets.token_hex(4)}"
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        f"""
        import subprocess

        def test_leaks():
            subprocess.run(["ip", "netns", "add", "{name}"], check=True)
        """
    )
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*the test run left the host changed*", f"*+ {name}*"])


@pytest.mark.netns
def test_a_clean_run_passes(pytester: pytest.Pytester) -> None:
    require_netns()
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
