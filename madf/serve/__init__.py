"""madf.serve: an HTTP inpainting service and a painting page over the shared Inpainter (any backend). May import
madf.common and madf.inpaint."""
