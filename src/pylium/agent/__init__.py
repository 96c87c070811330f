"""L5: pylium-agent, one per node."""
