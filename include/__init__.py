"""Plain-Python code of the package: the simulator's domain, the reference model service, sample data."""
