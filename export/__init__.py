"""madf.export: ONNX export of the image-level contract (madf.pipeline.InpaintModel), with the dynamic filter lowered
to standard ops or to the MADFDynamicFilter custom op. Reads the model only through madf's public API.
(Lands with the ONNX export issue.)"""
