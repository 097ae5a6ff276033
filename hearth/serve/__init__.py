"""The HTTP server: OpenAI-compatible /v1, Ollama-compatible /api, auth, metrics. Never touches tensors."""
