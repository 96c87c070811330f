"""L2: network policy: repository, selector cache, resolution to map entries, explanations."""
