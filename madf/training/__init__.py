"""madf.training: the trainer, its losses, and evaluation (metrics, OpenCV baselines, reports). May import
madf.common, madf.model, madf.inpaint and madf.data."""
