"""madf.model: the PyTorch model: its config, the dynamic-filter op and its implementations (unfold reference,
rewrite, the fused CUDA kernel through its torch binding), MADFNet, the contract wrapper, checkpoints, torch
speed-ups. May import madf.common only."""
