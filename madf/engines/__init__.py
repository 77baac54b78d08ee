"""madf.engines: TensorRT / TensorRT-RTX engine building from ONNX files, sidecars, Triton model repositories.
Reads only ONNX files (through madf.export.onnx_file, the file contract); may import madf.common and that. The
plugin the engines carry is C++ under madf/csrc/plugins."""
