"""The networks: one generic decoder configured by ModelConfig, attention over a paged KV cache, quantized and LoRA linear layers. Knows nothing of files, requests or HTTP."""
