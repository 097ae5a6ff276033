"""Re-hashes the blobs that manifests name and reports each missing or corrupt one with
the models that use it. Knows nothing of sources or the database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hearth.store.blobs import BlobStore, hash_file
from hearth.store.manifests import Manifest

# (label, bytes done, bytes total) -> None
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BlobProblem:
    digest: str
    status: str  # "missing" | "corrupt"
    models: tuple[str, ...]
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    num_models: int
    num_blobs: int
    problems: list[BlobProblem] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)  # name -> why its manifest is bad

    @property
    def ok(self) -> bool:
        return not self.problems and not self.damaged

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "models": self.num_models,
            "blobs": self.num_blobs,
            "problems": [
                {
                    "digest": p.digest,
                    "status": p.status,
                    "models": list(p.models),
                    "detail": p.detail,
                }
                for p in self.problems
            ],
            "damaged_manifests": [
                {"name": name, "detail": detail} for name, detail in sorted(self.damaged.items())
            ],
        }


def verify_manifests(
    manifests: dict[str, Manifest],
    blobs: BlobStore,
    progress: Progress | None = None,
    damaged: dict[str, str] | None = None,
) -> VerifyReport:
    """Check every blob the manifests name; `damaged` (name -> why) are manifests that
    could not be read, reported as they are."""
    users: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for name, manifest in manifests.items():
        for f in manifest.files:
            users.setdefault(f.digest, []).append(name)
            sizes[f.digest] = f.size
    total = sum(sizes.values())
    done = 0
    problems = []
    for digest in sorted(users):
        path = blobs.path(digest)
        models = tuple(sorted(set(users[digest])))
        if not path.is_file():
            problems.append(BlobProblem(digest, "missing", models, f"{path} does not exist"))
            done += sizes[digest]
            continue
        base = done

        def step(n: int, _total: int, base: int = base) -> None:
            if progress:
                progress("verifying", base + n, total)

        actual = hash_file(path, step)
        done += sizes[digest]
        if actual != digest:
            problems.append(BlobProblem(digest, "corrupt", models, f"content hashes to {actual}"))
        elif path.stat().st_size != sizes[digest]:
            problems.append(BlobProblem(digest, "corrupt", models, "size differs from manifest"))
    damaged = damaged or {}
    return VerifyReport(len(manifests) + len(damaged), len(users), problems, damaged)
