"""gitlab-runner's config.toml keys as data (keys.json) -> the CRD schema of spec.config, the renderer, the importer."""
