"""madf.runtime: torch-free backends (ONNX Runtime, TensorRT) behind madf.inpaint's Inpainter, bench and parity.
Reads only ONNX files, plans and their sidecars; may import madf.common, madf.inpaint, madf.data, madf.export.onnx_file
and madf.engines.sidecar. The C++ runtime is under madf/csrc/runtime."""
