"""L2: pure cores: no I/O, no clock or randomness unless passed in. Carry the logic."""
