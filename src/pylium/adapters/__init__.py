"""L3: the only code that talks to the outside (store, kernel, network, cloud). Kept thin."""
