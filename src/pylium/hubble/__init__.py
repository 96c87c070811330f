"""L5: Hubble programs (the relay)."""
