"""``python -m pylium.cni``: the same as the ``pylium-cni`` executable (what the ``cilium-cni``
wrapper written by ``cni-install`` runs)."""

from pylium.cni.main import main

main()
