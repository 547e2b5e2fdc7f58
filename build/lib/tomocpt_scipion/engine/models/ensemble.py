"""Several networks of one config, trained with different seeds, scored together.

The members' activated scores are averaged by :mod:`..infer` (beside the flip views). On the
WBP benchmark with small CPU-trained networks, two members did not pick better than one
(README, Benchmarks), so no recipe uses an ensemble; it is there to try (``--ensemble``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """Members of one architecture; ``forward`` stacks their raw outputs (logits).

    Input (B, 1, Z, Y, X) → (n_members, B, C, Z, Y, X): the caller activates each member's
    output before averaging, so the average is one of scores, not of logits.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}.")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members])
