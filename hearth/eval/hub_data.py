"""The leaderboard tasks' data from the Hugging Face Hub: each task's upstream data set
(the ones lm-eval's v1 tasks load), downloaded with `huggingface_hub` (resumable, checked,
HF_ENDPOINT / HF_TOKEN honoured), read from its Parquet files and written in hearth's
layout (`<task>/<split>.jsonl`, the normalised fields hearth/eval/tasks read; see
hearth/eval/data.py). Offline machines copy a folder instead (`data.copy_data`).

Knows nothing of prompts, models or the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import OptionalDependencyError, SourceError

Row = dict[str, Any]


@dataclass(frozen=True)
class HubFile:
    """One split of an upstream data set: `repo` (a dataset repo), its Parquet `path`,
    the hearth file it becomes, and how a row is normalised (row, index) -> doc."""

    repo: str
    path: str
    target: str
    convert: Callable[[Row, int], Row]
    max_rows: int | None = None  # few-shot pools keep only their first rows


def _arc(split: str) -> Callable[[Row, int], Row]:
    def convert(row: Row, i: int) -> Row:
        labels = list(row["choices"]["label"])
        return {"id": row["id"], "question": row["question"],
                "choices": list(row["choices"]["text"]), "labels": labels,
                "answer_key": row["answerKey"], "answer": labels.index(row["answerKey"])}
    return convert


def _hellaswag(row: Row, i: int) -> Row:
    # lm-eval's context: activity_label + ": " + ctx_a + " " + ctx_b.capitalize()
    context = f"{row['activity_label']}: {row['ctx_a']} {str(row['ctx_b']).capitalize()}"
    return {"id": i, "context": context, "choices": list(row["endings"]),
            "answer": int(row["label"])}


def _mmlu(split: str) -> Callable[[Row, int], Row]:
    seen: dict[str, int] = {}

    def convert(row: Row, i: int) -> Row:
        n = seen[row["subject"]] = seen.get(row["subject"], -1) + 1
        return {"id": f"{row['subject']}/{split}/{n}", "subject": row["subject"],
                "question": row["question"], "choices": list(row["choices"]),
                "answer": int(row["answer"])}
    return convert


def _truthfulqa(row: Row, i: int) -> Row:
    mc1, mc2 = row["mc1_targets"], row["mc2_targets"]
    return {"id": i, "question": row["question"], "choices": list(mc1["choices"]), "answer": 0,
            "mc1_choices": list(mc1["choices"]), "mc1_labels": list(mc1["labels"]),
            "mc2_choices": list(mc2["choices"]), "mc2_labels": list(mc2["labels"])}


def _winogrande(row: Row, i: int) -> Row:
    return {"id": i, "sentence": row["sentence"], "option1": row["option1"],
            "option2": row["option2"], "choices": [row["option1"], row["option2"]],
            "answer": int(row["answer"]) - 1}


def _gsm8k(split: str) -> Callable[[Row, int], Row]:
    def convert(row: Row, i: int) -> Row:
        final = str(row["answer"]).split("####")[-1].strip().replace(",", "")
        return {"id": f"{split}_{i}", "question": row["question"], "answer": row["answer"],
                "final": final}
    return convert


# The data sets lm-eval's v1 leaderboard tasks load, at their Parquet paths on the Hub.
LEADERBOARD_SOURCES: tuple[HubFile, ...] = (
    HubFile("allenai/ai2_arc", "ARC-Challenge/test-00000-of-00001.parquet",
            "arc_challenge/test.jsonl", _arc("test")),
    HubFile("allenai/ai2_arc", "ARC-Challenge/train-00000-of-00001.parquet",
            "arc_challenge/train.jsonl", _arc("train")),
    HubFile("Rowan/hellaswag", "data/validation-00000-of-00001.parquet",
            "hellaswag/validation.jsonl", _hellaswag),
    HubFile("Rowan/hellaswag", "data/train-00000-of-00001.parquet",
            "hellaswag/train_fewshot_pool.jsonl", _hellaswag, max_rows=100),
    HubFile("cais/mmlu", "all/test-00000-of-00001.parquet", "mmlu/test.jsonl", _mmlu("test")),
    HubFile("cais/mmlu", "all/dev-00000-of-00001.parquet", "mmlu/dev.jsonl", _mmlu("dev")),
    HubFile("truthfulqa/truthful_qa", "multiple_choice/validation-00000-of-00001.parquet",
            "truthfulqa/mc.jsonl", _truthfulqa),
    HubFile("allenai/winogrande", "winogrande_xl/validation-00000-of-00001.parquet",
            "winogrande/validation.jsonl", _winogrande),
    HubFile("allenai/winogrande", "winogrande_xl/train-00000-of-00001.parquet",
            "winogrande/train_fewshot_pool.jsonl", _winogrande, max_rows=100),
    HubFile("openai/gsm8k", "main/test-00000-of-00001.parquet", "gsm8k/test.jsonl",
            _gsm8k("test")),
    HubFile("openai/gsm8k", "main/train-00000-of-00001.parquet", "gsm8k/train.jsonl",
            _gsm8k("train")),
)


def pull_from_hub(
    dest: Path,
    sources: Iterable[HubFile] = LEADERBOARD_SOURCES,
    progress: Callable[[str], None] | None = None,
    endpoint: str = "",
) -> list[Path]:
    """Download every source and write its hearth file under `dest` (each file written
    to a temporary name and renamed: an interrupted pull leaves no half file). Returns
    the written paths; SourceError names the data set that could not be fetched.
    `endpoint`: the Hub's address (Settings.hf_endpoint); empty: huggingface.co."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise OptionalDependencyError(
            "reading the Hub's Parquet files needs pyarrow: pip install 'hearth[data]' "
            "(or copy a data folder: hearth data pull leaderboard --from DIR)"
        ) from exc
    import shutil

    from huggingface_hub import hf_hub_download

    # downloads go next to the data (resumable there) and are removed once converted; not
    # huggingface_hub's shared cache, whose location it fixes when first imported
    cache = dest / ".hub-download"
    written = []
    for src in sources:
        if progress is not None:
            progress(f"{src.repo}: {src.path}")
        try:
            local = hf_hub_download(
                src.repo, src.path, repo_type="dataset", cache_dir=cache,
                # passed, not left to huggingface_hub: it reads HF_ENDPOINT once, at import
                endpoint=endpoint or None,
            )
        except Exception as exc:  # the library raises many kinds (HTTP, offline, auth)
            raise SourceError(
                f"could not download {src.path} of {src.repo} from the Hub ({exc}); check "
                "the network (HF_ENDPOINT, HF_TOKEN), or copy the data: --from DIR"
            ) from exc
        rows = pq.read_table(local).to_pylist()[: src.max_rows]
        target = dest / src.target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        with tmp.open("w", encoding="utf-8") as fh:
            for i, row in enumerate(rows):
                fh.write(json.dumps(src.convert(row, i), ensure_ascii=False) + "\n")
        tmp.replace(target)
        written.append(target)
    shutil.rmtree(cache, ignore_errors=True)
    return written
