"""L0: stdlib-only building blocks shared by every layer (errors, ids, address arithmetic)."""
