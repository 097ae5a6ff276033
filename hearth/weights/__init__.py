"""Bytes on disk to tensors: GGUF files and Hugging Face folders become a ModelConfig, HF-named tensors and tokenizer data. Knows nothing of requests."""
