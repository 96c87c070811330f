"""L3: eBPF: building objects with clang, loading them through libbpf, pinning, test runs."""
