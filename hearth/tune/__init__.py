"""Fine-tuning (LoRA): not implemented yet; this package is where it will live."""
