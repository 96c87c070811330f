"""L3: what the running kernel's BPF offers, asked of the kernel itself (libbpf's probes load
a tiny program calling the helper), as upstream's ``pkg/datapath/linux/probes`` does."""

from __future__ import annotations

from pylium.adapters.bpf import libbpf

BPF_PROG_TYPE_SCHED_CLS = 3
BPF_FUNC_FIB_LOOKUP = 69
BPF_FUNC_REDIRECT_NEIGH = 152
BPF_FUNC_REDIRECT_PEER = 155

HOST_ROUTING_HELPERS = {
    "bpf_fib_lookup": BPF_FUNC_FIB_LOOKUP,
    "bpf_redirect_neigh": BPF_FUNC_REDIRECT_NEIGH,
    "bpf_redirect_peer": BPF_FUNC_REDIRECT_PEER,
}
"""The helpers BPF host routing calls from tc programs (kernel 5.10 and later)."""


def have_helper(prog_type: int, helper: int) -> bool:
    """Whether programs of ``prog_type`` may call ``helper`` on this kernel (errors, such as
    missing privileges, are raised as DatapathError)."""
    rc = libbpf.lib().libbpf_probe_bpf_helper(prog_type, helper, None)
    return bool(libbpf.check(rc, f"helper {helper}", "probe"))


def missing_host_routing_helpers() -> list[str]:
    """The helpers of :data:`HOST_ROUTING_HELPERS` this kernel lacks for tc programs."""
    return [
        name
        for name, helper in HOST_ROUTING_HELPERS.items()
        if not have_helper(BPF_PROG_TYPE_SCHED_CLS, helper)
    ]
