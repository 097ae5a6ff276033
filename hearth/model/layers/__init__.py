"""The reference networks in plain PyTorch; nothing here imports a kernel or reads a setting."""
