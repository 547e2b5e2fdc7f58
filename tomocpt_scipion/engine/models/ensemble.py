"""Several networks of one config, trained with different seeds, scored together.

The members' activated scores are averaged by :mod:`..infer` (beside the flip views), which
places picks closer to the particle centres than any one member: on the WBP benchmark,
ribosome 4v94, two members moved the mean hit distance from 1.80 to 1.56 px (README).
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
