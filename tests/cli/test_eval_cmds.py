"""`hearth eval` and `hearth leaderboard` through the real CLI entry point: every
leaderboard task end to end with --limit 5 on a tiny random model behind a real
OpenAI-compatible server on 127.0.0.1, the stored runs in the leaderboard, and the bad
inputs (unknown task, --limit <= 0, missing data, unreachable server)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import Cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
from eval_tiny_lm import DATA, MMLU_SUBJECTS, TinyTokenizer, make_completions_app, serve, tiny_model


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    tokenizer = TinyTokenizer()
    with serve(make_completions_app(tiny_model(tokenizer.vocab_size), tokenizer)) as url:
        yield url


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch, hearth_home: Path) -> None:
    monkeypatch.setenv("HEARTH_EVAL_DATA", str(DATA.resolve()))


def test_leaderboard_tasks_end_to_end(
    cli: Cli, server_url: str, tmp_path: Path, hearth_home: Path
) -> None:
    out_file = tmp_path / "results.json"
    code, out, err = cli(
        "eval", "tiny", "--tasks", "leaderboard", "--limit", "5", "--backend", "openai",
        "--base-url", server_url, "--model", "tiny-model", "--max-gen-tokens", "32",
        "--json", "--output", str(out_file), "--log-samples",
    )  # fmt: skip
    assert code == 0, err
    reports = json.loads(out)
    assert json.loads(out_file.read_text()) == reports
    assert [r["task"] for r in reports] == ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"]
    by_task = {r["task"]: r for r in reports}
    assert by_task["mmlu"]["num_items"] == 4 * MMLU_SUBJECTS  # the fixture has 4 per subject
    assert sum(1 for m in by_task["mmlu"]["results"] if m["subtask"]) == MMLU_SUBJECTS
    for r in reports:
        assert r["limit"] == 5 and r["backend"] == "openai" and r["items_per_s"] > 0
        assert all(0.0 <= m["value"] <= 1.0 for m in r["results"])
        assert Path(r["samples_path"]).is_file()
    assert {(m["metric"], m["subtask"]) for m in by_task["gsm8k"]["results"]} == {
        ("exact_match", "strict-match"), ("exact_match", "flexible-extract"),
    }  # fmt: skip

    code, out, err = cli("leaderboard", "--format", "csv")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.startswith("model,digest,arc_challenge,hellaswag,mmlu,truthfulqa_mc2,winogrande,gsm8k,average")
    assert row.startswith("tiny *,")  # --limit 5 differs from the leaderboard's settings
    arc = next(m for m in by_task["arc_challenge"]["results"] if m["metric"] == "acc_norm")
    assert f"{100 * arc['value']:.2f}" in row
    code, out, _ = cli("leaderboard")
    assert "tiny *" in out and "settings differ" in out
    code, out, _ = cli("leaderboard", "--format", "markdown")
    assert out.startswith("| model |")


def test_table_output_and_resume_of_a_finished_run(cli: Cli, server_url: str) -> None:
    args = ("eval", "tiny", "--tasks", "winogrande", "--limit", "2", "--backend", "openai", "--base-url", server_url)
    code, out, err = cli(*args)
    assert code == 0, err
    assert "winogrande" in out and "acc" in out
    code, out, err = cli(*args, "--resume", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["num_resumed"] == 0  # complete runs are not resumed: a new run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tasks", "arc_challenge,nope"), "unknown task 'nope'; known tasks: arc_challenge, hellaswag, mmlu, truthfulqa_mc2, winogrande, gsm8k"),
        (("--tasks", "arc_challenge", "--limit", "0"), "--limit must be a positive"),
        (("--tasks", "arc_challenge", "--limit", "-3"), "--limit must be a positive"),
        (("--tasks", "arc_challenge", "--backend", "openai"), "needs --base-url"),
        # the missing flag is reported before the missing data
        (("--tasks", "arc_challenge", "--backend", "openai", "--data-dir", "/nonexistent-eval-data"), "needs --base-url"),
        (("--tasks", "arc_challenge", "--backend", "vllm"), "--backend must be"),
        (("--tasks", "arc_challenge", "--data-dir", "/nonexistent-eval-data"), "/nonexistent-eval-data/arc_challenge/test.jsonl not found"),
        (("--tasks", "winogrande", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--limit", "1"), "cannot reach"),
        (("--tasks", "winogrande", "--quant", "int3"), "--quant must be one of auto, none, int8, int4"),
        (("--tasks", "winogrande", "--quant", "int4", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"), "the server decides"),
    ],
)
def test_bad_input(cli: Cli, args: tuple[str, ...], message: str) -> None:
    code, _, err = cli("eval", "tiny", *args)
    assert code in (1, 2), err  # 2: bad argument, 1: missing data / server
    assert message in err


def test_leaderboard_empty_and_bad_format(cli: Cli) -> None:
    code, out, _ = cli("leaderboard")
    assert code == 0 and "no evaluation runs yet" in out
    code, out, _ = cli("leaderboard", "--json")
    assert code == 0 and json.loads(out) == []
    code, _, err = cli("leaderboard", "--format", "xml")
    assert code == 2 and "--format must be one of" in err


def test_quant_runs_hearths_engine_quantized(cli: Cli, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_NUM_THREADS", "1")  # the shared 2-core machine: one engine thread
    runs = {}
    for quant in ("none", "int8"):
        args = ("eval", str(smollm2_gguf), "--tasks", "winogrande", "--limit", "3", "--quant", quant)
        code, out, err = cli(*args, "--json", "--log-samples")
        assert code == 0, err
        (report,) = json.loads(out)
        assert report["quant"] == quant and report["backend"] == "hearth"
        lines = Path(report["samples_path"]).read_text().splitlines()
        runs[quant] = [json.loads(line)["prediction"]["loglikelihoods"] for line in lines]
    # the int8 engine really ran: its log-likelihoods moved, but only by int8's small error
    diffs = [abs(a - b) for x, y in zip(runs["none"], runs["int8"], strict=True) for a, b in zip(x, y, strict=True)]
    assert 0 < max(diffs) < 1.0  # summed over a continuation of several tokens
    code, out, _ = cli("leaderboard", "--format", "json")
    assert sorted(r["quant"] for r in json.loads(out)) == ["int8", "none"]


def test_data_pull_from_a_folder(cli: Cli, tmp_path: Path) -> None:
    """`hearth data pull leaderboard --from DIR` copies the tasks' files into the eval data
    folder. A folder that lacks files is a one-line error and nothing is written."""
    dest = tmp_path / "data"
    code, out, err = cli("data", "pull", "leaderboard", "--from", str(DATA), "--data-dir", str(dest))
    assert code == 0, err
    assert "copied" in out and (dest / "mmlu" / "dev.jsonl").read_bytes() == (
        DATA / "mmlu" / "dev.jsonl").read_bytes()
    assert (dest / "README.md").is_file()  # sources and licenses travel with the data
    broken = tmp_path / "broken"
    (broken / "arc_challenge").mkdir(parents=True)
    (broken / "arc_challenge" / "test.jsonl").write_text("{}\n")
    code, _, err = cli("data", "pull", "leaderboard", "--from", str(broken),
                       "--data-dir", str(tmp_path / "d2"))
    assert code != 0 and "lacks" in err and "Traceback" not in err
    assert not (tmp_path / "d2").exists()


def test_engine_backend_runs_the_license_gate(nc_gguf: Path, hearth_home: Path) -> None:
    from hearth.cli.eval_cmds import _engine_lm
    from hearth.config import load_settings
    from hearth.errors import PolicyError
    from hearth.licenses.policy import set_policy_value

    set_policy_value(load_settings(), "commercial", "true")
    with pytest.raises(PolicyError, match="NonCommercial"):
        _engine_lm(str(nc_gguf), "none")  # what `hearth eval MODEL` runs: refused before loading


def test_missing_data_says_how_to_get_it(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("eval", "tiny", "--tasks", "gsm8k", "--backend", "openai",
                       "--base-url", "http://127.0.0.1:9/v1", "--data-dir", str(tmp_path))
    assert code != 0 and "hearth data pull leaderboard" in err and "Traceback" not in err
