"""L1: typed resource shapes (Kubernetes and Cilium kinds) and their validation."""
