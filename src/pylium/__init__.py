"""pylium: Cilium rebuilt with a Python control plane over a real eBPF datapath.

Layers (imports point down only, checked by import-linter, see pyproject.toml):
base -> model -> core -> adapters -> runtime -> daemons (agent, operator, cni,
hubble) -> lab -> cli.
"""

__version__ = "0.1.0"
