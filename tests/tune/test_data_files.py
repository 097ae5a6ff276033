from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.errors import UserInputError
from hearth.tune.data_files import read_rows

ROWS = [
    {"instruction": "Add", "input": "2+2", "output": "4"},
    {"prompt": "Hi", "completion": " there"},
]


def test_jsonl_rows_carry_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n")
    rows = read_rows(path)
    assert [r.fields for r in rows] == ROWS
    assert [r.source for r in rows] == ["d.jsonl:1", "d.jsonl:3"]


def test_bad_jsonl_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(UserInputError, match=r"d\.jsonl:2: not valid JSON"):
        read_rows(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(UserInputError, match=r"d\.jsonl:1: a row must be a JSON object"):
        read_rows(path)


def test_json_array_csv_parquet_text_and_datasets_folder(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    assert [r.fields for r in read_rows(tmp_path / "a.json")] == ROWS

    csv_path = tmp_path / "c.csv"
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a, b"}]
    import csv

    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["messages"])
        writer.writerow([json.dumps(messages)])
    rows = read_rows(csv_path)
    assert rows[0].fields == {"messages": messages}
    assert rows[0].source == "c.csv:2"

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS[1:]), tmp_path / "p.parquet")
    assert [r.fields for r in read_rows(tmp_path / "p.parquet")] == ROWS[1:]

    (tmp_path / "t.txt").write_text("one\ntwo\n\n\nthree\n")
    rows = read_rows(tmp_path / "t.txt")
    assert [(r.fields["text"], r.source) for r in rows] == [
        ("one\ntwo", "t.txt:1"),
        ("three", "t.txt:5"),
    ]

    import datasets

    datasets.Dataset.from_list(ROWS[1:]).save_to_disk(str(tmp_path / "ds"))
    assert [r.fields for r in read_rows(tmp_path / "ds")] == ROWS[1:]


def test_unknown_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no data at"):
        read_rows(tmp_path / "nope.jsonl")
    (tmp_path / "x.bin").write_bytes(b"\0")
    with pytest.raises(UserInputError, match=r"does not read \.bin"):
        read_rows(tmp_path / "x.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=r"not one `datasets\.save_to_disk` wrote"):
        read_rows(tmp_path / "empty")
