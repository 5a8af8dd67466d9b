"""The hub's three services, each a thin package over the shared core in `integrator`."""
