"""The benchmark harness: Open LLM Leaderboard tasks scored through the engine or an OpenAI-compatible server."""
