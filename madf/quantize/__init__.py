"""madf.quantize: INT8 ONNX files from exported FP32 ones, calibrated on real photos and gated against FP32 (int8.py).
Reads only ONNX files (through madf.export.onnx_file, the file contract); may import madf.common, madf.inpaint (the
photo reading and the contract's tensors) and madf.data (photos and the paper's hole-ratio masks)."""
