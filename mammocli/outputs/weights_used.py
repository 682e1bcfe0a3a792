"""What a result records about each weight file it used. Defined by the weights layer (which
computes it); the result schema imports it, never the other way round."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WeightsUsed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    sha256: str
    path: str | None = None
