"""Opening a backend from a file, without the CLI: ``open_backend(BackendSpec(...))`` (madf.backends.spec).

The assembly layer: it may import common, model (the PyTorch backend's checkpoint), inpaint, export, engines and
runtime; serve and scale get what it opens as a callable, and cli turns options into a spec."""
