"""madf.engines: TensorRT / TensorRT-RTX engine building from ONNX files, and the MADFDynamicFilter plugin
(plugins/). Reads only ONNX files. (Lands with the TensorRT issue.)"""
