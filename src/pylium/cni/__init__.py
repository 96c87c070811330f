"""L5: pylium-cni, the CNI plugin executed by container runtimes."""
