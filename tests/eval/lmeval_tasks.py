"""lm-evaluation-harness task configs over the shared local data (the Hub is unreachable
here): each config includes lm-eval's own YAML for the task (its prompt templates, splits,
metrics, filters, generation settings) and overrides only where the data comes from —
`dataset_path: json` with `data_files` — plus, where our normalised schema differs from
the Hub's, a `process_docs` that maps it back to the fields lm-eval's templates read.
Nothing else is changed, so lm-eval renders its own prompts; `num_fewshot` is set to
the leaderboard's. MMLU gets one task per
subject, each with its own test/dev files (lm-eval's shots are the subject's first five
dev rows). Used by the agreement test; imported by tests only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from lmeval_ref import lm_eval_tasks_dir

from hearth.eval.tasks import TASKS as TASK_TABLE

# our schema -> the fields lm-eval's task YAMLs read (loaded by lm-eval as a !function module)
UTILS = """


def hellaswag_docs(dataset):
    # the shared file stores `activity_label: ctx` already joined (see its README)
    return dataset.map(lambda d: {
        "query": preprocess(d["context"]),
        "choices": [preprocess(e) for e in d["choices"]],
        "label": str(d["answer"]),
    })


def winogrande_docs(dataset):
    # lm-eval reads "1"/"2"; a map onto the int column would cast the strings back
    dataset = dataset.map(lambda d: {"answer_text": str(int(d["answer"]) + 1)})
    return dataset.remove_columns("answer").rename_column("answer_text", "answer")


def truthfulqa_docs(dataset):
    return dataset.map(lambda d: {
        "mc1_targets": {"choices": d["mc1_choices"], "labels": d["mc1_labels"]},
        "mc2_targets": {"choices": d["mc2_choices"], "labels": d["mc2_labels"]},
    })
"""

# task -> (lm-eval YAML it includes, {split: data file}, overrides)
TASKS: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "arc_challenge": (
        "arc/arc_challenge.yaml",
        {
            "train": "arc_challenge/train.jsonl",
            "validation": "arc_challenge/validation.jsonl",
            "test": "arc_challenge/test.jsonl",
        },
        # ours: choices is the list of texts, answer the gold index
        {"doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}"},
    ),
    "hellaswag": (
        "hellaswag/hellaswag.yaml",
        {
            "train": "hellaswag/train_fewshot_pool.jsonl",
            "validation": "hellaswag/validation.jsonl",
        },
        {"process_docs": "!function hearth_utils.hellaswag_docs"},
    ),
    "truthfulqa_mc2": (
        "truthfulqa/truthfulqa_mc2.yaml",
        {"validation": "truthfulqa/mc.jsonl"},
        {"process_docs": "!function hearth_utils.truthfulqa_docs"},
    ),
    "winogrande": (
        "winogrande/default.yaml",
        {
            "train": "winogrande/train_fewshot_pool.jsonl",
            "validation": "winogrande/validation.jsonl",
        },
        {"process_docs": "!function hearth_utils.winogrande_docs"},
    ),
    "gsm8k": (
        "gsm8k/gsm8k.yaml",
        {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
        {},
    ),
}


def _write(
    path: Path,
    include: Path,
    task: str,
    data_files: dict[str, str],
    extra: dict[str, Any],
    shots: int,
) -> None:
    config: dict[str, Any] = {
        "include": str(include),
        "task": task,
        "num_fewshot": shots,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files},
    }
    functions = {
        k: v for k, v in extra.items() if isinstance(v, str) and v.startswith("!function ")
    }
    config.update({k: v for k, v in extra.items() if k not in functions})
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    # yaml.safe_dump cannot write tags: append the !function lines by hand
    text += "".join(f"{k}: {v}\n" for k, v in functions.items())
    path.write_text(text, encoding="utf-8")


def write_configs(data_dir: Path, out: Path) -> dict[str, list[str]]:
    """Write the configs under `out`; returns hearth task name -> lm-eval task names
    (one per subject for mmlu, named `hearth_mmlu_<subject>`)."""
    out.mkdir(parents=True, exist_ok=True)
    lm_tasks = lm_eval_tasks_dir()
    # lm-eval's own hellaswag `preprocess`, then our mappers
    hellaswag_utils = (lm_tasks / "hellaswag" / "utils.py").read_text(encoding="utf-8")
    (out / "hearth_utils.py").write_text(hellaswag_utils + UTILS, encoding="utf-8")
    names: dict[str, list[str]] = {}
    for task, (include, files, extra) in TASKS.items():
        data_files = {split: str(data_dir / rel) for split, rel in files.items()}
        shots = TASK_TABLE[task].num_fewshot  # the leaderboard's setting
        _write(
            out / f"hearth_{task}.yaml",
            lm_tasks / include,
            f"hearth_{task}",
            data_files,
            extra,
            shots,
        )
        names[task] = [f"hearth_{task}"]
    names["mmlu"] = _write_mmlu(data_dir, out, lm_tasks)
    return names


def _write_mmlu(data_dir: Path, out: Path, lm_tasks: Path) -> list[str]:
    """One task per subject over per-subject test/dev files, each including lm-eval's own
    subject YAML (its description) and so its default template."""
    by_subject: dict[str, dict[str, list[str]]] = {}
    for split in ("test", "dev"):
        for line in (data_dir / "mmlu" / f"{split}.jsonl").read_text(encoding="utf-8").split("\n"):
            if line.strip():
                doc = json.loads(line)
                by_subject.setdefault(doc["subject"], {"test": [], "dev": []})[split].append(line)
    mmlu_dir = out / "mmlu_data"
    mmlu_dir.mkdir(exist_ok=True)
    names = []
    for subject in sorted(by_subject):
        files = {}
        for split, lines in by_subject[subject].items():
            path = mmlu_dir / f"{subject}_{split}.jsonl"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            files[split] = str(path)
        name = f"hearth_mmlu_{subject}"
        include = lm_tasks / "mmlu" / "default" / f"mmlu_{subject}.yaml"
        _write(out / f"{name}.yaml", include, name, files, {}, TASK_TABLE["mmlu"].num_fewshot)
        names.append(name)
    return names
