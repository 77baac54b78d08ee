"""What madf-serve's routes take and answer, as OpenAPI (and generated clients, and schemathesis) read them: the
POST /inpaint body in its two encodings, the one-line error body, and the /health and /info answers as pydantic
models, so every documented field is checked against what the route returns."""
from typing import Any, Dict, Optional

from pydantic import BaseModel, Field

# A multipart form's yes / no (an empty field, as an HTML form sends it, is no)
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
ERROR = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}},
                                          "required": ["detail"]}}}
# The request body of POST /inpaint, for /docs and generated clients (the route parses it itself: two encodings)
INPAINT_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image", "mask"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "the photo (PNG, JPEG, WebP, TIFF, ...)"},
        "mask": {"type": "string", "format": "binary", "description": "white (>= 128) = hole, the photo's size"},
        "invert_mask": {"type": "string", "enum": list(TRUE + FALSE),
                        "description": "masks are white = known (official / NVIDIA masks); empty = no"}}}},
    "application/json": {"schema": {"type": "object", "required": ["image", "mask"], "properties": {
        "image": {"type": "string", "minLength": 1, "description": "base64 (or a data: URL) of the photo"},
        "mask": {"type": "string", "minLength": 1, "description": "base64 (or a data: URL) of the mask"},
        "invert_mask": {"type": "boolean", "default": False}}}}}}


class Health(BaseModel):
    status: str = Field(description="ok while the service answers")
    replica: str = Field(description="the process that answered (host:pid, or a Ray replica)")


class Limits(BaseModel):
    max_upload_mb: float
    max_megapixels: float
    queue_size: int
    max_batch: int


class Info(BaseModel):
    version: str = Field(description="madf's version")
    replica: str
    backend: str = Field(description="what runs the network (PyTorch, ONNX Runtime, TensorRT) and its file")
    device: Optional[str] = None
    precision: str = Field(description="fp32 or fp16")
    model: Optional[Dict[str, Any]] = Field(None, description="the network's configuration, when the backend has it")
    multiple: int = Field(description="the pad multiple, 2^levels")
    strategy: Dict[str, Any] = Field(description="how large photos are cut into pieces (madf.inpaint.strategy)")
    limits: Limits
    batches_run: int
    largest_batch: int
