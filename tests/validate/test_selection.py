"""validate selects the file a runtime uses, as every part of cnisdk does (cnisdk._confdir)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_confdir import SELECTION_SCENARIOS  # tests/ is on sys.path (rootless test modules)

from cnisdk._confdir import primary_network
from cnisdk._validate import validate_paths


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", sorted(SELECTION_SCENARIOS))
async def test_validate_selects_the_runtimes_file(tmp_path: Path, scenario: str) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    expected = SELECTION_SCENARIOS[scenario](conf_dir)
    path, _ = primary_network(conf_dir)
    assert path.name == expected
    reports = await validate_paths([str(conf_dir)], cni_path=[], check_presence=False)
    assert [Path(r.path).name for r in reports if r.selected] == [expected]
    # Every file a runtime lists has a report, in the runtime's order, and none crashed.
    assert [Path(r.path).name for r in reports] == sorted(
        (Path(r.path).name for r in reports), key=lambda n: n.encode()
    )
