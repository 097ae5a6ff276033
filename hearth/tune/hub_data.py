"""Training data from the Hugging Face Hub: `hf://datasets/ORG/NAME` (the repository's data
files: its train split where files say so, else every file of its one data format) or
`hf://datasets/ORG/NAME/PATH` (one file), optionally `@REVISION` after NAME. Files come
through huggingface_hub (so HF_ENDPOINT, tokens and mirrors work as everywhere else) into a
folder the caller owns. Knows nothing of rows or tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hearth.errors import OptionalDependencyError, UserInputError

__all__ = ["HubData", "fetch_hub_data", "is_hub_data", "parse_hub_data"]

PREFIX = "hf://datasets/"
_DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class HubData:
    repo_id: str
    path: str | None
    revision: str | None


def is_hub_data(source: str | Path) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def parse_hub_data(source: str) -> HubData:
    parts = source.removeprefix(PREFIX).split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise UserInputError(
            f"{source}: give hf://datasets/ORG/NAME or hf://datasets/ORG/NAME/FILE"
        )
    name, _, revision = parts[1].partition("@")
    path = "/".join(parts[2:]) or None
    return HubData(f"{parts[0]}/{name}", path, revision or None)


def fetch_hub_data(source: str, folder: Path, endpoint: str = "") -> list[Path]:
    """Download the data files `source` names into `folder`; returns them in order.
    `endpoint`: the Hub's address (Settings.hf_endpoint; passed, not left to
    huggingface_hub, which reads HF_ENDPOINT once, at import); empty: huggingface.co."""
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a core dependency
        raise OptionalDependencyError("hf:// data needs huggingface_hub") from exc
    hub = parse_hub_data(source)
    try:
        files = (
            [hub.path]
            if hub.path
            else _data_files(
                HfApi(endpoint=endpoint or None).list_repo_files(
                    hub.repo_id, repo_type="dataset", revision=hub.revision
                )
            )
        )
        if not files:
            raise UserInputError(
                f"{source} has no {', '.join(_DATA_SUFFIXES)} files; name one: {source}/FILE"
            )
        return [
            Path(hf_hub_download(hub.repo_id, f, repo_type="dataset", revision=hub.revision,
                                 local_dir=folder, endpoint=endpoint or None))
            for f in files
        ]  # fmt: skip
    except HfHubHTTPError as exc:
        raise UserInputError(f"cannot fetch {source} from the Hub: {exc}") from exc


def _data_files(files: list[str]) -> list[str]:
    """The training files of a dataset repository: those of the first data format present,
    narrowed to the train split when some paths say "train"."""
    for suffix in _DATA_SUFFIXES:
        found = sorted(f for f in files if f.endswith(suffix))
        if found:
            train = [f for f in found if "train" in f.lower()]
            return train or found
    return []
