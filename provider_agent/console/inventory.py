"""What a set of backends serves, model by model: the rows of ``provider-agent
models``.

A model is listed once per backend that serves it, within that backend's
allow-list, with its context window and, given the config's ``[pricing]``, the
price it resolves to (None where no price is set).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..fleet.config import PricingConfig
from ..scan import ScanResult

__all__ = ["ModelRow", "model_rows"]


@dataclass(frozen=True)
class ModelRow:
    """One model on one backend; prices in USDC micro-units per million tokens."""

    model: str
    backend: str
    kind: str
    context_window: Optional[int]
    native: bool
    input_per_1m: Optional[int] = None
    output_per_1m: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def model_rows(
    scanned: Sequence[Tuple[Optional[Sequence[str]], ScanResult]],
    pricing: Optional[PricingConfig] = None,
) -> List[ModelRow]:
    """A row for each model each backend lists, kept to its allow-list (the
    first of each pair; None for every model), in the backends' order."""
    rows = []
    for allowed, result in scanned:
        for model in result.models:
            if allowed is not None and model.model_id not in allowed:
                continue
            price = pricing.resolve(model.model_id) if pricing is not None else None
            rows.append(
                ModelRow(
                    model.model_id,
                    result.id,
                    result.kind,
                    model.context_window,
                    model.native,
                    price.input_per_1m if price else None,
                    price.output_per_1m if price else None,
                )
            )
    return rows
