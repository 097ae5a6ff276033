"""License facts (a data table), detection from model files and cards, and the use policy check. Knows nothing of tensors."""
