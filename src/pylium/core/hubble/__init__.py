"""L2: Hubble flows, filters and the flow ring (pure)."""
