"""`hearth arena import | export | leaderboard` through the real CLI entry point on a
temporary HEARTH_HOME: bad rows named by line (nothing imported unless all parse, or
--skip-bad), unknown models refused unless --any-model, the JSON leaderboard's fields, the
DPO pairs, and an honest "too few battles" instead of an interval."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import Cli


def _battles(n: int) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        winner = ["model_a", "model_a", "model_b", "tie", "tie (bothbad)"][i % 5]
        out.append({
            "model_a": "big" if i % 2 else "small", "model_b": "small" if i % 2 else "big",
            "winner": winner, "anony": True, "tstamp": 1_700_000_000 + i,
            "conversation_a": [{"role": "user", "content": f"q{i}"},
                               {"role": "assistant", "content": f"answer a{i}"}],
            "conversation_b": [{"role": "user", "content": f"q{i}"},
                               {"role": "assistant", "content": f"answer b{i}"}],
        })  # fmt: skip
    return out


def test_import_leaderboard_export(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "battles.json"
    src.write_text(json.dumps(_battles(60), indent=2))
    code, out, err = cli("arena", "import", str(src), "--any-model")
    assert code == 0, err
    assert "imported 60 battle(s)" in out

    code, out, err = cli("arena", "leaderboard", "--json")
    assert code == 0, err
    board = json.loads(out)
    assert {r["model"] for r in board} == {"big", "small"}
    assert board[0]["rating"] >= board[1]["rating"]
    for row in board:
        assert {"model", "rating", "ci_low", "ci_high", "rank", "battles", "win_rate"} <= set(row)
        assert row["battles"] == 60 and row["ci_low"] < row["rating"] < row["ci_high"]
        assert row["both_bad"] == 12 and row["ties"] == 12

    code, table, _ = cli("arena", "leaderboard", "--style-control")
    assert code == 0 and "style control" in table

    out_file = tmp_path / "dpo.jsonl"
    code, _, err = cli("arena", "export", "--format", "dpo", "-o", str(out_file))
    assert code == 0, err
    pairs = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(pairs) == 36  # decided battles only
    assert pairs[0] == {"prompt": "q0", "chosen": "answer a0", "rejected": "answer b0"}

    code, out, _ = cli("arena", "export", "--format", "fastchat")
    exported = json.loads(out)
    assert len(exported) == 60 and exported[3]["winner"] == "tie"
    assert exported[4]["winner"] == "tie (bothbad)"


def test_bad_rows_named_by_line(cli: Cli, tmp_path: Path) -> None:
    good = json.dumps({"model_a": "x", "model_b": "y", "winner": "model_a"})
    src = tmp_path / "battles.jsonl"
    src.write_text(
        "\n".join(
            [
                good,
                "{not json",
                good,
                json.dumps({"model_a": "x", "model_b": "y", "winner": "left"}),
            ]
        )
    )
    code, _, err = cli("arena", "import", str(src), "--any-model")
    assert code == 2
    assert "2 bad row(s), nothing imported" in err and "line 2" in err and "line 4" in err
    assert "--skip-bad" in err
    code, out, _ = cli("arena", "leaderboard", "--json")
    assert json.loads(out) == []

    code, out, err = cli("arena", "import", str(src), "--any-model", "--skip-bad")
    assert code == 0, err
    assert "imported 2 battle(s), skipped 2 bad row(s)" in out

    listed = tmp_path / "list.json"
    listed.write_text(
        '[\n  {"model_a": "x", "model_b": "y", "winner": "tie"},\n  {"model_a": "x"}\n]'
    )
    code, _, err = cli("arena", "import", str(listed), "--any-model")
    assert code == 2 and "line 3: 'model_b' is missing" in err


def test_unknown_models_refused(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "b.jsonl"
    src.write_text(json.dumps({"model_a": "gpt-4", "model_b": "claude-1", "winner": "tie"}))
    code, _, err = cli("arena", "import", str(src))
    assert code == 2 and "'gpt-4' is not in the store" in err and "--any-model" in err


def test_too_few_battles_said_plainly(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "few.jsonl"
    src.write_text("\n".join(json.dumps(b) for b in _battles(4)))
    assert cli("arena", "import", str(src), "--any-model")[0] == 0
    code, out, _ = cli("arena", "leaderboard")
    assert code == 0 and "too few battles for an interval" in out
    code, out, _ = cli("arena", "leaderboard", "--json")
    assert all(r["ci_low"] is None and r["rank"] is None for r in json.loads(out))


def test_bad_options(cli: Cli) -> None:
    code, _, err = cli("arena", "leaderboard", "--both-bad", "draw")
    assert code == 2 and "--both-bad" in err
    code, _, err = cli("arena", "leaderboard", "--style-control", "--both-bad", "loss")
    assert code == 2
    code, _, err = cli("arena", "export", "--format", "csv")
    assert code == 2 and "fastchat or dpo" in err
