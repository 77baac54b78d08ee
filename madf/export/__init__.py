"""madf.export: ONNX export of the image-level contract (madf.model.pipeline.InpaintModel), with the dynamic filter
lowered to standard ops or to the MADFDynamicFilter custom op, FP16, and onnx_file (the exported file's contract,
torch-free, which engines and runtime read). May import madf.common and madf.model's public names."""
