"""`hearth tune`'s distributed flags: bad values and a Ray address that does not answer are
one-line usage errors (exit 2) before any work, and never a hang."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from cli_runner import run_hearth_raw as _run

TUNE = ("tune", "nothing-stored", "--data", "none.jsonl", "--name", "out")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("--nproc", "0"), "--nproc must be >= 1"),
        (("--nproc", "2", "--shard", "zero3"), "--shard must be one of auto, full, none"),
        (("--shard", "full"), "--shard full splits the model over ranks: add --nproc 2"),
        (("--nproc", "2", "--ray-address", "nowhere"), "give HOST:PORT"),
    ],
)
def test_bad_distributed_flags_exit_2_in_one_line(
    hearth_home: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], needle: str
) -> None:
    code, _, err = _run(capsys, *TUNE, *argv)
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_ray_address_that_does_not_answer_exits_2_quickly(
    hearth_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    code, _, err = _run(capsys, *TUNE, "--nproc", "2", "--ray-address", f"127.0.0.1:{port}")
    assert code == 2 and f"no Ray cluster answers at 127.0.0.1:{port}" in err
    assert "ray start --head" in err and "--ray-address local" in err
    assert time.monotonic() - start < 30


def test_a_port_that_is_not_ray_exits_2_instead_of_hanging(
    hearth_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        code, _, err = _run(capsys, *TUNE, "--nproc", "2", "--ray-address", address)
    assert code == 2 and ("timed out" in err or "does not speak gRPC" in err)
    assert time.monotonic() - start < 30
