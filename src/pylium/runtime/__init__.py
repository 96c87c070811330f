"""L4: daemon scaffolding shared by agent and operator (settings loading, logging, jobs)."""
