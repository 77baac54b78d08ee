"""A madf-serve app's settings, one frozen record in ``app.state.settings`` (what create_app was given)."""
from __future__ import annotations

import dataclasses
import os
import socket
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Settings:
    max_upload_mb: float = 20
    max_megapixels: float = 40
    queue_size: int = 16
    max_batch: int = 4
    wait_ms: float = 10
    device: str = "cpu"
    replica: Optional[str] = None

    def __post_init__(self):
        if self.replica is None:   # this copy of the service: host:pid (Ray Serve replicas pass their id)
            object.__setattr__(self, "replica", f"{socket.gethostname()}:{os.getpid()}")

    @property
    def upload_limit(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)

    @property
    def capacity(self) -> int:
        """Requests one process takes at once: its queue and one running batch (decode slots; a Ray Serve
        replica's max_ongoing_requests)."""
        return self.queue_size + self.max_batch

    def limits(self) -> dict:
        return {"max_upload_mb": self.max_upload_mb, "max_megapixels": self.max_megapixels,
                "queue_size": self.queue_size, "max_batch": self.max_batch}
