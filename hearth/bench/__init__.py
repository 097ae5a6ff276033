"""`hearth bench`: hearth's engine against llama.cpp and transformers on the same model file,
in the same command, plus the accuracy cost of each quantization mode."""
