"""L5: Hubble flow observability (observer, gRPC server, relay)."""
