"""The staging area: an entry a live pull holds (in this process or another) is never
removed; one whose pull died is, with its bytes counted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hearth.store.staging import StagingArea, unique_name


def test_claimed_entries_are_removed_when_done_or_kept_to_resume(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging")
    with area.claim(unique_name("pypi-a")) as work:
        (work / "f").write_bytes(b"x" * 10)
    assert list(area.root.iterdir()) == []
    with pytest.raises(RuntimeError), area.claim("hf-org--repo--main", keep_on_error=True) as hub:
        (hub / "part").write_bytes(b"y" * 7)
        raise RuntimeError("download cut")
    assert (hub / "part").is_file()
    assert area.clean(keep=("hf-",)) == 0 and hub.is_dir()  # a pull start keeps it
    assert area.clean() == 7 and list(area.root.iterdir()) == []  # prune does not


def test_an_entry_held_by_a_live_process_survives_until_it_dies(tmp_path: Path) -> None:
    area = StagingArea(tmp_path / "staging")
    code = (
        "import sys, time; from pathlib import Path; from hearth.store.staging import StagingArea;"
        "c = StagingArea(Path(sys.argv[1])).claim('pypi-x.1'); w = c.__enter__();"
        "(w / 'f').write_bytes(b'z' * 5); print('ready', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(area.root)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert area.clean() == 0 and (area.root / "pypi-x.1" / "f").is_file()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    deadline = time.monotonic() + 5
    while area.clean() == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(area.root.iterdir()) == []
