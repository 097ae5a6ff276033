"""The reference decoder in plain PyTorch: attention, MLP, MoE, MLA, norms, rope, linear and
quantized linear layers, LoRA adapters on projections (lora.py), the decoder. Every fast operation is asked of the Ops a layer was
built with (ops.py); nothing here imports a kernel or reads a setting."""
