"""L2: load balancing for kube-proxy replacement: frontends, backends, Maglev, map rows."""
