"""The README's two install commands and CI install the CPU build of torch the same way: from
PyTorch's CPU wheel index as an extra index (its `+cpu` build wins over PyPI's CUDA one), a
command that also works offline from a local mirror (pip skips the unreachable index)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def _readme_commands() -> str:
    """The README's ```bash blocks (the prose may show other torch lines, e.g. for GPUs)."""
    return "\n".join(re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S))


def _torch_installs(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"pip install (?:-q )?(torch==[^&\n]+)", text)]


def test_readme_and_ci_install_torch_from_the_cpu_index() -> None:
    readme = _torch_installs(_readme_commands())
    ci = _torch_installs((REPO / ".ci" / "run").read_text())
    assert len(readme) >= 2 and ci  # the two README commands, and CI's
    assert set(readme) == set(ci) == {f"torch==2.13.0 {CPU_INDEX}"}


@pytest.mark.slow
def test_readme_torch_line_resolves_to_the_cpu_build() -> None:
    """Resolves (not installs) the README's torch requirement with the local pip: online the
    CPU index's build wins, offline pip skips the index and the mirror's wheel is used."""
    (line,) = set(_torch_installs(_readme_commands()))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
         *line.split()],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Would install torch-2\.13\.0\+cpu", proc.stdout), proc.stdout
