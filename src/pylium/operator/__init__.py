"""L5: pylium-operator, one per cluster (leader-elected)."""
