"""The networks: one generic decoder configured by ModelConfig (layers/, plain PyTorch: the
reference and the tests' oracle), attention over a paged KV cache, quantized linear layers,
and the CPU backend (cpu/: C kernels and their threads) chosen once at load (backend.py).
Knows nothing of files, requests or HTTP."""
