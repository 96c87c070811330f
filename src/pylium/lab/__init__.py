"""L6: the lab: a multi-node cluster built from network namespaces on one machine."""
