"""L3: netlink through pyroute2: namespaces, links, addresses, routes."""
