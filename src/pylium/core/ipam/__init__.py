"""L2: IP address management, pure: node CIDRs carved from cluster pools (operator side) and pod
IPs handed out from a node's CIDRs (agent side). See README.md."""
