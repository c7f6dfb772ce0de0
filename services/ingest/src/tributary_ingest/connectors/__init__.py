"""The built-in sources: simulator, csv, http, mqtt (registered in pyproject.toml under `tributary.sources`)."""
