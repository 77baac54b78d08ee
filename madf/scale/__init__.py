"""Past one machine, on Ray: batch inpainting of collections (Ray Data actors, object-store URIs) and madf-serve
replicas (Ray Serve). Imports madf.common, madf.inpaint and madf.serve; the model comes in as a callable that
builds an Inpainter where it runs, so no backend is imported here."""
