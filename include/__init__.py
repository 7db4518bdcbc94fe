"""Plain-Python code of the package: the simulator domain, the model service, sample data."""
