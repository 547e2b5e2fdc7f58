"""Every backbone maps (B, 1, D, H, W) to (B, C, D, H, W) at its documented patch sizes."""

import pytest
import torch

from tomocpt_scipion.engine.models import build_model, patch_multiple, smallest_patch


@pytest.mark.parametrize(
    "name,size,patch",
    [
        ("resunet", "small", 16),
        ("resunet", "small", 32),
        ("resunet", "default", 24),
        ("multiresunet", "small", 32),
        ("multiresunet", "default", 32),
        ("swinunetr", "small", 64),
    ],
)
def test_backbone_output_shape(name, size, patch):
    torch.manual_seed(0)
    model = build_model(name, out_channels=3, size=size).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 1, patch, patch, patch))
    assert out.shape == (2, 3, patch, patch, patch)
    assert patch % patch_multiple(name) == 0 and patch >= smallest_patch(name)


def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(ValueError, match="multiresunet.*resunet.*swinunetr"):
        build_model("unet9", 1)
