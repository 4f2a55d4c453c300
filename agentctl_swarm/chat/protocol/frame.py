"""The base every frame model shares (pure)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frame(BaseModel):
    """One JSON object on the wire; ``type`` says which. Unknown fields are kept, as
    upstream ignores them (and the server never forwards them)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: str
