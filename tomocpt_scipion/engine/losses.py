"""Losses of the three recipes, and the class priors of positive-unlabeled learning.

All losses take network logits ``(B, C, Z, Y, X)`` and a target of the same spatial size:

==============  =================================  ========================  ===============
name            target                             activation at inference   paper
==============  =================================  ========================  ===============
huber-gradient  (B, C, Z, Y, X) float Gaussians    identity, clipped [0, 1]  tomoCPT eq. 6-9
dice            (B, 1, Z, Y, X) class indices      softmax, classes 1..n     DeepETPicker 5
bce             (B, 1, Z, Y, X) 0/1                sigmoid                   TomoPicker eq 1
nnpu            (B, 1, Z, Y, X) 0/1 (1 = labelled) sigmoid                   TomoPicker 4-5
kl              (B, 1, Z, Y, X) 0/1 (1 = labelled) sigmoid                   TomoPicker 6-8
==============  =================================  ========================  ===============

PU priors (TomoPicker §3.2): π = |P| / |P ∪ U| is the labelled-positive voxel fraction;
π' = Ep · Rn / |P ∪ U| with Ep the expected particles per tomogram, Rn the voxels one
particle labels and |P ∪ U| the voxels of one tomogram; π'' = π' - π.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .specs import LOSS_SPECS

__all__ = [
    "HuberGradientLoss",
    "DiceLoss",
    "BCEPNLoss",
    "NonNegativePULoss",
    "KLPULoss",
    "LOSSES",
    "build_loss",
    "pu_priors",
    "activation",
]

_EPS_DICE = 1e-8
_EPS_LOG = 1e-7


def _second_derivatives(volume: torch.Tensor) -> torch.Tensor:
    """(B, C, Z, Y, X) → (B, 3C, Z-2, Y-2, X-2): central second differences along z, y, x."""
    inner = volume[:, :, 1:-1, 1:-1, 1:-1]
    dzz = volume[:, :, 2:, 1:-1, 1:-1] - 2 * inner + volume[:, :, :-2, 1:-1, 1:-1]
    dyy = volume[:, :, 1:-1, 2:, 1:-1] - 2 * inner + volume[:, :, 1:-1, :-2, 1:-1]
    dxx = volume[:, :, 1:-1, 1:-1, 2:] - 2 * inner + volume[:, :, 1:-1, 1:-1, :-2]
    return torch.cat([dzz, dyy, dxx], dim=1)


class HuberGradientLoss(nn.Module):
    """tomoCPT loss: voxel-weighted Huber + ``gradient_weight`` × Huber of second derivatives.

    The weight of eq. 9 is M³/|P| on positive voxels (target > 0) and M³/|N| on the others,
    per sample, so the weighted mean equals mean Huber over positives plus mean Huber over
    negatives. Second derivatives are central differences on interior voxels, as the
    order-2 ``spatial_gradient3d`` of kornia that the paper used.

    Args:
        delta: Huber threshold. Defaults to 1.0.
        gradient_weight: weight of the gradient term. Defaults to 10 (eq. 6).
    """

    def __init__(self, delta: float = 1.0, gradient_weight: float = 10.0) -> None:
        super().__init__()
        self.delta = delta
        self.gradient_weight = gradient_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits, target: (B, C, Z, Y, X) → scalar."""
        huber = F.huber_loss(logits, target, reduction="none", delta=self.delta)
        positive = (target > 0).to(huber.dtype)
        dims = tuple(range(1, huber.ndim))
        n_positive = positive.sum(dims)
        n_negative = positive[0].numel() - n_positive
        positive_term = (huber * positive).sum(dims) / n_positive.clamp(min=1)
        negative_term = (huber * (1 - positive)).sum(dims) / n_negative.clamp(min=1)
        weighted = (positive_term + negative_term).mean()
        gradient = F.huber_loss(_second_derivatives(logits), _second_derivatives(target), delta=self.delta)
        return weighted + self.gradient_weight * gradient


class DiceLoss(nn.Module):
    """DeepETPicker multi-class Dice (eq. 5) on softmax probabilities, averaged over classes 1..n.

    ``1 - (2 Σ p g + ε) / (Σ p² + Σ g² + ε)`` per class over the whole batch, ε = 1e-8.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, n+1, Z, Y, X), target (B, 1, Z, Y, X) class indices → scalar."""
        n_channels = logits.shape[1]
        probabilities = torch.softmax(logits, dim=1)
        one_hot = F.one_hot(target[:, 0].long(), n_channels).movedim(-1, 1).to(probabilities.dtype)
        dims = (0, 2, 3, 4)
        intersection = (probabilities * one_hot).sum(dims)
        denominator = (probabilities**2).sum(dims) + (one_hot**2).sum(dims)
        dice = (2 * intersection + _EPS_DICE) / (denominator + _EPS_DICE)
        return 1 - dice[1:].mean()


def _binary_risks(logits: torch.Tensor, target: torch.Tensor):
    """Mean BCE of positive voxels labelled 1 and 0, of unlabeled voxels labelled 0, and counts."""
    positive = target > 0
    loss_as_1 = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    loss_as_0 = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    n_p = positive.sum()
    n_u = positive.numel() - n_p
    risk_p_plus = (loss_as_1 * positive).sum() / n_p.clamp(min=1)
    risk_p_minus = (loss_as_0 * positive).sum() / n_p.clamp(min=1)
    risk_u_minus = (loss_as_0 * ~positive).sum() / n_u.clamp(min=1)
    return risk_p_plus, risk_p_minus, risk_u_minus, n_p


class _PriorWeightedLoss(nn.Module):
    """Base of the losses weighted by a class prior, with TomoPicker's γ (§3.3).

    γ = ``gamma_scale`` · |P| / bs, |P| the labelled particles of the batch (positive voxels /
    ``voxels_per_particle``); never below 1, and 1 when ``gamma_scale`` is 0.
    """

    def __init__(self, prior: float, gamma_scale: float = 0.0, voxels_per_particle: int = 1) -> None:
        super().__init__()
        if not 0 < prior < 1:
            raise ValueError(f"prior must be in (0, 1), got {prior}.")
        self.prior = prior
        self.gamma_scale = gamma_scale
        self.voxels_per_particle = voxels_per_particle

    def _gamma(self, n_positive_voxels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if not self.gamma_scale:
            return torch.ones((), dtype=logits.dtype)
        particles = n_positive_voxels / self.voxels_per_particle
        return torch.clamp(self.gamma_scale * particles / logits.shape[0], min=1.0).to(logits.dtype)


class BCEPNLoss(_PriorWeightedLoss):
    """Positive-negative BCE (TomoPicker eq. 1): π E_P[L(f, 1)] + (1 - π) E_U[L(f, 0)].

    Args:
        prior: π, the labelled-positive voxel fraction of the training data.
    """

    def __init__(self, prior: float) -> None:
        super().__init__(prior)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits, target: (B, 1, Z, Y, X) → scalar."""
        risk_p_plus, _, risk_u_minus, _ = _binary_risks(logits, target)
        return self.prior * risk_p_plus + (1 - self.prior) * risk_u_minus


class NonNegativePULoss(_PriorWeightedLoss):
    """Non-negative PU risk (TomoPicker eq. 4-5) with the γ scaling of §3.3.

    ``R = π' γ R_P+ + N`` with the negative-class risk ``N = (1 - π) R_U- - (π' - π) R_P-``
    while ``N ≥ 0``; otherwise the loss is ``-N``, whose gradient pushes that risk back up
    (the nnPU correction of Kiryo et al.). γ weights the positive fit only: scaling R_P- by
    γ as well (one reading of §3.3) makes the negative-class risk negative from the first
    step whenever π'γ > 1, and the correction then teaches the network the inverse of the
    labels (measured: scores inside particles 0.15, outside 0.43).

    The labelled particles are voxels of the tomograms themselves, not a separate sample, so
    the unlabelled voxels hold the positive fraction π' - π of the data, not π'; the paper's
    ``R_U- - π' R_P-`` (π = 0) counts the labelled particles twice. The difference is small
    for sparse labels and decisive for complete ones: there π = π', ``N`` is the PN negative
    risk and the loss is the PN loss (γ aside), where the paper's form still treats a π'
    share of the background as particles (on the WBP benchmark its scores crowded at the top
    and the calibrated threshold missed the best one by up to 0.18 F1, README).

    Args:
        prior: π', expected positive voxel fraction (see :func:`pu_priors`).
        gamma_scale: the 10 of γ = 10 |P| / bs; 0 disables the scaling. Defaults to 10.
        voxels_per_particle: voxels one labelled particle covers (Rn), to count |P| in particles.
        labelled_prior: π, the labelled-positive voxel fraction; 0 gives the paper's form
            (labelled particles drawn apart from the unlabelled data).
    """

    def __init__(
        self, prior: float, gamma_scale: float = 10.0, voxels_per_particle: int = 1, labelled_prior: float = 0.0
    ) -> None:
        super().__init__(prior, gamma_scale, voxels_per_particle)
        if not 0 <= labelled_prior < 1:
            raise ValueError(f"labelled_prior must be in [0, 1), got {labelled_prior}.")
        self.labelled_prior = labelled_prior

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits, target: (B, 1, Z, Y, X) → scalar."""
        risk_p_plus, risk_p_minus, risk_u_minus, n_p = _binary_risks(logits, target)
        gamma = self._gamma(n_p, logits)
        unlabelled_prior = max(self.prior - self.labelled_prior, 0.0)
        negative_risk = (1 - self.labelled_prior) * risk_u_minus - unlabelled_prior * risk_p_minus
        if negative_risk >= 0:
            return self.prior * gamma * risk_p_plus + negative_risk
        return -negative_risk


class KLPULoss(_PriorWeightedLoss):
    """KL-regularised PU (TomoPicker eq. 6-8): γ E_P[L(f, 1)] + λ KL(E_U[f] ‖ π'').

    The KL is between Bernoulli distributions of means E_U[sigmoid(f)] and π''.

    Args:
        prior_unlabeled: π'' = π' - π, expected positive fraction among unlabeled voxels.
        kl_weight: λ. Defaults to 1.
        gamma_scale: the 10 of γ = 10 |P| / bs; 0 disables the scaling. Defaults to 10.
        voxels_per_particle: voxels one labelled particle covers (Rn), to count |P| in particles.
    """

    def __init__(
        self, prior_unlabeled: float, kl_weight: float = 1.0, gamma_scale: float = 10.0, voxels_per_particle: int = 1
    ) -> None:
        super().__init__(prior_unlabeled, gamma_scale, voxels_per_particle)
        self.kl_weight = kl_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits, target: (B, 1, Z, Y, X) → scalar."""
        risk_p_plus, _, _, n_p = _binary_risks(logits, target)
        gamma = self._gamma(n_p, logits)
        unlabeled = target <= 0
        mean_u = (torch.sigmoid(logits) * unlabeled).sum() / unlabeled.sum().clamp(min=1)
        mean_u = mean_u.clamp(_EPS_LOG, 1 - _EPS_LOG)
        q = self.prior  # π''
        kl = mean_u * torch.log(mean_u / q) + (1 - mean_u) * torch.log((1 - mean_u) / (1 - q))
        return gamma * risk_p_plus + self.kl_weight * kl


def pu_priors(
    labelled_voxels: int,
    total_voxels: int,
    expected_particles_per_tomogram: float,
    voxels_per_particle: int,
    voxels_per_tomogram: float,
    labelled_particles_per_tomogram: float,
) -> dict[str, float]:
    """π, π' and π'' of TomoPicker (eq. 2, 4, 8).

    Parameters
    ----------
    labelled_voxels : |P|, positive voxels of the training labels.
    total_voxels : |P ∪ U|, all voxels of the training data.
    expected_particles_per_tomogram : Ep, given by the user.
    voxels_per_particle : Rn, voxels one particle labels.
    voxels_per_tomogram : mean voxels of one training tomogram (at the training scale).
    labelled_particles_per_tomogram : mean labelled particles per training tomogram.

    Raises
    ------
    ValueError
        Ep is smaller than the particles already labelled, or the priors leave (0, 1).
    """
    if expected_particles_per_tomogram < labelled_particles_per_tomogram:
        raise ValueError(
            f"expected particles per tomogram ({expected_particles_per_tomogram:g}) is smaller than "
            f"the particles already labelled per tomogram ({labelled_particles_per_tomogram:g}); "
            f"it must count every particle, labelled or not."
        )
    pi = labelled_voxels / total_voxels
    pi_expected = expected_particles_per_tomogram * voxels_per_particle / voxels_per_tomogram
    if not 0 < pi_expected < 1:
        raise ValueError(
            f"expected particles per tomogram ({expected_particles_per_tomogram:g}) "
            f"gives a positive fraction π' = {pi_expected:.3g}; it must be in (0, 1)."
        )
    return {"pi": pi, "pi_expected": pi_expected, "pi_unlabeled": max(pi_expected - pi, 1e-6)}


LOSSES = {
    "huber-gradient": HuberGradientLoss,
    "dice": DiceLoss,
    "bce": BCEPNLoss,
    "nnpu": NonNegativePULoss,
    "kl": KLPULoss,
}


def build_loss(
    name: str,
    priors: dict[str, float] | None = None,
    gamma_scale: float = 10.0,
    kl_weight: float = 1.0,
    voxels_per_particle: int = 1,
) -> nn.Module:
    """Loss by name; PU losses and BCE need ``priors`` from :func:`pu_priors`, PU losses the
    voxels one labelled particle covers (for γ)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}.")
    if LOSS_SPECS[name].needs_priors and priors is None:
        raise ValueError(f"loss {name!r} needs the class priors (expected particles per tomogram).")
    if name == "bce":
        return BCEPNLoss(priors["pi"])
    if name == "nnpu":
        return NonNegativePULoss(priors["pi_expected"], gamma_scale, voxels_per_particle, priors["pi"])
    if name == "kl":
        return KLPULoss(priors["pi_unlabeled"], kl_weight, gamma_scale, voxels_per_particle)
    return LOSSES[name]()


def activation(loss_name: str, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-class scores in [0, 1] from logits: (B, C, ...) → (B, n_classes, ...).

    ``temperature`` divides the logits of a sigmoid or softmax first (a regression output is
    only clipped): float32 rounds a sigmoid to exactly 1 above a logit of about 16.6.
    """
    kind = LOSS_SPECS[loss_name].activation
    if kind == "softmax":
        return torch.softmax(logits / temperature, dim=1)[:, 1:]
    if kind == "sigmoid":
        return torch.sigmoid(logits / temperature)
    return logits.clamp(0, 1)
