"""LanguageModel implementations: hearth's engine, or any OpenAI-compatible server."""
