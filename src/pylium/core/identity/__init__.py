"""L2: security identities, pure: reserved numbers, identity-relevant labels, numeric allocation."""
