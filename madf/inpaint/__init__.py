"""madf.inpaint: the image-level API: Inpainter over any backend, image reading/writing and compositing (imaging),
the full / crop / resize strategies. May import madf.common, and madf.model lazily for the PyTorch backend; imaging
and strategy need neither torch nor onnx."""
