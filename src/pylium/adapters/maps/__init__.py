"""L3: one module per BPF map, each owning its key/value layout (checked against BTF)."""
