"""L7: the ``pylium`` command-line interface (mirrors cilium, cilium-dbg and hubble verbs)."""
