"""madf.runtime: torch-free backends (ONNX Runtime, TensorRT) behind madf.inpaint's image-level API, and the C++
runtime under cpp/. Reads only ONNX files, plans and their sidecars. (Lands with the runtime issues.)"""
