"""Each loss against a direct numpy computation on a tiny tensor."""

import numpy as np
import pytest
import torch

from tomocpt_scipion.engine.losses import (
    BCEPNLoss,
    DiceLoss,
    HuberGradientLoss,
    KLPULoss,
    NonNegativePULoss,
    build_loss,
    pu_priors,
)

RNG = np.random.default_rng(7)


def _huber(a, b, delta=1.0):
    d = np.abs(a - b)
    return np.where(d < delta, 0.5 * d**2, delta * (d - 0.5 * delta))


def _d2(v):
    inner = v[:, :, 1:-1, 1:-1, 1:-1]
    return np.concatenate(
        [
            v[:, :, 2:, 1:-1, 1:-1] - 2 * inner + v[:, :, :-2, 1:-1, 1:-1],
            v[:, :, 1:-1, 2:, 1:-1] - 2 * inner + v[:, :, 1:-1, :-2, 1:-1],
            v[:, :, 1:-1, 1:-1, 2:] - 2 * inner + v[:, :, 1:-1, 1:-1, :-2],
        ],
        axis=1,
    )


def _bce(logit, label):
    p = 1 / (1 + np.exp(-logit))
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def test_huber_gradient_loss_matches_numpy():
    pred = RNG.normal(0, 1.5, (2, 1, 5, 5, 5))
    target = np.clip(RNG.normal(0, 1, (2, 1, 5, 5, 5)), 0, None)
    h = _huber(pred, target)
    weighted = np.mean([h[b][target[b] > 0].mean() + h[b][target[b] == 0].mean() for b in range(2)])
    expected = weighted + 10 * _huber(_d2(pred), _d2(target)).mean()
    got = HuberGradientLoss()(torch.tensor(pred), torch.tensor(target))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_dice_loss_matches_numpy_over_foreground_classes():
    logits = RNG.normal(size=(2, 3, 4, 4, 4))
    target = RNG.integers(0, 3, (2, 1, 4, 4, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    g = np.stack([(target[:, 0] == c) for c in range(3)], axis=1).astype(float)
    dice = [
        (2 * (p[:, c] * g[:, c]).sum() + 1e-8) / ((p[:, c] ** 2).sum() + (g[:, c] ** 2).sum() + 1e-8) for c in (1, 2)
    ]
    got = DiceLoss()(torch.tensor(logits), torch.tensor(target))
    assert float(got) == pytest.approx(1 - np.mean(dice), rel=1e-6)


def test_bce_pn_loss_matches_numpy():
    logits, target = RNG.normal(size=(2, 1, 4, 4, 4)), (RNG.random((2, 1, 4, 4, 4)) < 0.2).astype(float)
    pos = target > 0
    expected = 0.1 * _bce(logits[pos], 1).mean() + 0.9 * _bce(logits[~pos], 0).mean()
    assert float(BCEPNLoss(0.1)(torch.tensor(logits), torch.tensor(target))) == pytest.approx(expected, rel=1e-6)


def test_nnpu_uses_the_pu_risk_when_the_negative_risk_is_non_negative():
    logits, target = RNG.normal(size=(2, 1, 4, 4, 4)), (RNG.random((2, 1, 4, 4, 4)) < 0.2).astype(float)
    pos, prior = target > 0, 0.3
    r_p_plus, r_p_minus = _bce(logits[pos], 1).mean(), _bce(logits[pos], 0).mean()
    r_u_minus = _bce(logits[~pos], 0).mean()
    assert r_u_minus - prior * r_p_minus >= 0
    expected = prior * (r_p_plus - r_p_minus) + r_u_minus
    got = NonNegativePULoss(prior, gamma_scale=0)(torch.tensor(logits), torch.tensor(target))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_nnpu_switches_to_the_correction_when_the_negative_risk_turns_negative():
    target = np.zeros((1, 1, 4, 4, 4))
    target[..., :2, :, :] = 1
    logits = np.where(target > 0, 5.0, -5.0)  # labelled voxels confidently positive, the rest negative
    prior = 0.5
    r_p_minus = _bce(logits[target > 0], 0).mean()
    r_u_minus = _bce(logits[target == 0], 0).mean()
    assert r_u_minus - prior * r_p_minus < 0
    got = NonNegativePULoss(prior, gamma_scale=0)(torch.tensor(logits), torch.tensor(target))
    assert float(got) == pytest.approx(prior * r_p_minus - r_u_minus, rel=1e-6)


def test_nnpu_gamma_scales_the_positive_terms_by_ten_labelled_particles_per_batch():
    target = np.zeros((2, 1, 4, 4, 4))
    target[0, 0, 0, :3, :2] = 1  # 6 positive voxels, 2 voxels per particle: 3 particles in a batch of 2
    logits = RNG.normal(size=target.shape)
    pos, prior, gamma = target > 0, 0.01, 10 * 3 / 2
    r_p_plus, r_p_minus = _bce(logits[pos], 1).mean(), _bce(logits[pos], 0).mean()
    expected = prior * gamma * r_p_plus - prior * r_p_minus + _bce(logits[~pos], 0).mean()
    got = NonNegativePULoss(prior, gamma_scale=10, voxels_per_particle=2)(torch.tensor(logits), torch.tensor(target))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_nnpu_counts_the_labelled_particles_once_with_the_labelled_prior():
    logits, target = RNG.normal(size=(2, 1, 4, 4, 4)), (RNG.random((2, 1, 4, 4, 4)) < 0.2).astype(float)
    pos, expected_prior, labelled_prior = target > 0, 0.3, 0.1
    r_p_plus, r_p_minus = _bce(logits[pos], 1).mean(), _bce(logits[pos], 0).mean()
    r_u_minus = _bce(logits[~pos], 0).mean()
    expected = (
        expected_prior * r_p_plus + (1 - labelled_prior) * r_u_minus - (expected_prior - labelled_prior) * r_p_minus
    )
    got = NonNegativePULoss(expected_prior, gamma_scale=0, labelled_prior=labelled_prior)(
        torch.tensor(logits), torch.tensor(target)
    )
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_nnpu_on_a_complete_annotation_is_the_pn_loss():
    logits, target = RNG.normal(size=(2, 1, 4, 4, 4)), (RNG.random((2, 1, 4, 4, 4)) < 0.2).astype(float)
    prior = float(target.mean())
    complete = NonNegativePULoss(prior, gamma_scale=0, labelled_prior=prior)(torch.tensor(logits), torch.tensor(target))
    assert float(complete) == pytest.approx(
        float(BCEPNLoss(prior)(torch.tensor(logits), torch.tensor(target))), rel=1e-6
    )


def test_build_loss_gives_nnpu_the_labelled_prior_of_the_training_data():
    priors = pu_priors(100, 10_000, 10, 50, 5_000, 4)
    loss = build_loss("nnpu", priors, voxels_per_particle=50)
    assert (loss.prior, loss.labelled_prior) == (priors["pi_expected"], priors["pi"])


def test_kl_pu_loss_matches_numpy():
    logits, target = RNG.normal(size=(2, 1, 4, 4, 4)), (RNG.random((2, 1, 4, 4, 4)) < 0.2).astype(float)
    pos, q, lam = target > 0, 0.05, 2.0
    mean_u = (1 / (1 + np.exp(-logits[~pos]))).mean()
    kl = mean_u * np.log(mean_u / q) + (1 - mean_u) * np.log((1 - mean_u) / (1 - q))
    expected = _bce(logits[pos], 1).mean() + lam * kl
    got = KLPULoss(q, kl_weight=lam, gamma_scale=0)(torch.tensor(logits), torch.tensor(target))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_pu_priors_follow_tomopicker_equations_2_4_8():
    priors = pu_priors(
        labelled_voxels=300,
        total_voxels=100_000,
        expected_particles_per_tomogram=40,
        voxels_per_particle=100,
        voxels_per_tomogram=50_000,
        labelled_particles_per_tomogram=1.5,
    )
    assert priors["pi"] == pytest.approx(0.003)
    assert priors["pi_expected"] == pytest.approx(40 * 100 / 50_000)
    assert priors["pi_unlabeled"] == pytest.approx(0.08 - 0.003)


def test_expected_particles_below_the_labelled_count_is_refused():
    with pytest.raises(ValueError, match=r"expected particles per tomogram \(3\) is smaller.*\(5\)"):
        pu_priors(500, 10_000, 3, 100, 10_000, 5)
