"""`hf://ORG/REPO[@REVISION]`: downloads a model repository snapshot with
`huggingface_hub.snapshot_download` (resumable and checksummed by the library; HF_ENDPOINT
is honoured) into a staging folder. Knows nothing of blobs, manifests or names."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.errors import SourceError

_SPEC = re.compile(r"hf://([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)(?:@([^\s/]+))?")

PREFIX = "hf-"  # staging entries of Hub downloads, kept after a failure to resume from

# (bytes done, bytes total) -> None
ByteProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class HubSpec:
    org: str
    repo: str
    revision: str | None

    @classmethod
    def parse(cls, source: str) -> HubSpec:
        m = _SPEC.fullmatch(source.strip())
        if not m or ".." in source:
            raise SourceError(
                f"invalid Hub source {source!r}; expected hf://ORG/REPO or hf://ORG/REPO@REVISION"
            )
        return cls(m.group(1), m.group(2), m.group(3))

    @property
    def repo_id(self) -> str:
        return f"{self.org}/{self.repo}"

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.org}--{self.repo}--{self.revision or 'main'}".lower()


def download(
    spec: HubSpec, target: Path, progress: ByteProgress | None = None, endpoint: str = ""
) -> Path:
    """The snapshot folder, downloaded into `target` (staging/`spec.key`). An interrupted
    download resumes from the same folder. `endpoint`: the Hub's address
    (Settings.hf_endpoint); empty: huggingface.co."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    target.mkdir(parents=True, exist_ok=True)
    try:
        path = snapshot_download(
            spec.repo_id,
            # passed, not left to huggingface_hub: it reads HF_ENDPOINT once, at import
            endpoint=endpoint or None,
            revision=spec.revision,
            local_dir=target,
            tqdm_class=_progress_class(progress),
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise SourceError(
            f"could not download {spec.repo_id} from the Hub ({type(exc).__name__}: {exc}); "
            "check the name, the revision and the network (HF_ENDPOINT, HF_TOKEN)"
        ) from exc
    return Path(path)


def _progress_class(progress: ByteProgress | None) -> Any:
    """A tqdm class that draws nothing and forwards the snapshot's byte count to `progress`:
    the caller draws one bar for the whole pull."""
    from huggingface_hub.utils import tqdm

    class Forward(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._forward = kwargs.get("name") == "huggingface_hub.snapshot_download"
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._done = 0

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            if self._forward and progress is not None:
                progress(self._done, int(self.total or 0))
            return None

    return Forward
