"""Text <-> ids from tokenizer.json or GGUF vocabularies, incremental detokenization, and chat templates. Knows nothing of tensors or requests."""
