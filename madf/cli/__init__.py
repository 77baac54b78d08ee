"""Console scripts, one module each, thin over the library modules."""
