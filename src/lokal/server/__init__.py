"""`lokal serve`: the Ollama-compatible (`/api/*`) and OpenAI-compatible (`/v1/*`) HTTP server."""
