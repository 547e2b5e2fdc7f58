"""The centring network learns to put picks back on planted off-grid centres, travels in the
checkpoint, and is left out where the validation particles are too few to check it."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from tests.engine.conftest import TINY
from tomocpt_scipion.engine import io
from tomocpt_scipion.engine import train as train_module
from tomocpt_scipion.engine.annotation import ENOUGH_PARTIAL_LABELS
from tomocpt_scipion.engine.calibrate import CENTRING_EVIDENCE
from tomocpt_scipion.engine.centring import (
    CONVERGING_PASSES,
    build_centring_network,
    centre_positions,
    centring_diameter_px,
    crop_size,
    train_centring,
)
from tomocpt_scipion.engine.checkpoint import load_centring, read_checkpoint, save_checkpoint
from tomocpt_scipion.engine.cli import main
from tomocpt_scipion.engine.config import recipe_config
from tomocpt_scipion.engine.models import build_model
from tomocpt_scipion.engine.particle_template import SPARSE_NETWORK_WEIGHT, ParticleTemplate
from tomocpt_scipion.engine.predict import centre_picks
from tomocpt_scipion.engine.simulate import simulate_dataset

DIAMETER_PX = 12.0


def _planted(seed: int, n: int = 20, shape=(40, 80, 80), cut: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Dark, lopsided particles (a ball and a smaller offset one) at off-grid centres in noise;
    the first ``cut`` of them are cut by a z face of the volume (centre 0-1.5 px inside it)."""
    rng = np.random.default_rng(seed)
    margin, cut = DIAMETER_PX, min(cut, n)
    centres = np.column_stack([rng.uniform(margin, s - margin, n) for s in shape])  # z, y, x
    depth = rng.uniform(0, 1.5, cut)
    centres[:cut, 0] = np.where(np.arange(cut) % 2, depth, shape[0] - 1 - depth)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), -1)
    volume = rng.normal(0, 0.25, shape)
    for centre in centres:
        lobe = centre + rng.normal(0, 1, 3) / np.sqrt(3) * DIAMETER_PX / 4  # random direction, a quarter away
        for c, radius, weight in ((centre, DIAMETER_PX / 2, 1.0), (lobe, DIAMETER_PX / 4, 0.5)):
            r = np.linalg.norm(grid - c, axis=-1)
            volume -= weight / (1 + np.exp((r - radius) / 0.7))
    return volume.astype(np.float32), centres


@pytest.fixture(scope="module")
def trained_net():
    torch.manual_seed(0)
    weights, distance = train_centring([_planted(1)], [_planted(2)], DIAMETER_PX, steps=500, seed=3)
    net = build_centring_network()
    net.load_state_dict(weights)
    return net.eval(), distance


def test_planted_off_grid_centres_are_recovered_from_picks_two_pixels_away(trained_net):
    net, _ = trained_net
    volume, centres = _planted(4)
    rng = np.random.default_rng(5)
    picks_xyz = (centres + rng.normal(0, 2.0 / np.sqrt(3), centres.shape))[:, ::-1]
    before = np.linalg.norm(picks_xyz - centres[:, ::-1], axis=1)
    after = np.linalg.norm(centre_positions(net, volume, 1.0, picks_xyz, DIAMETER_PX)[0] - centres[:, ::-1], axis=1)
    assert before.mean() > 1.5
    # 500 CPU-test steps give a median of 0.48 px
    assert np.median(after) < 0.6 and after.mean() < before.mean() / 3, (np.median(after), after.mean())


def test_particles_cut_by_a_face_of_the_tomogram_are_not_pulled_onto_the_face(trained_net):
    net, _ = trained_net
    volume, centres = _planted(6, n=8, cut=8)
    after, _ = centre_positions(net, volume, 1.0, centres[:, ::-1], DIAMETER_PX)
    toward_face = np.where(centres[:, 0] < volume.shape[0] / 2, -1, 1) * (after[:, 2] - centres[:, 0])
    # reflect-padded crops mirror a cut particle about the face and pull every one towards it (0.49 px)
    assert toward_face.mean() < 0.3, toward_face


def test_coordinates_are_scaled_between_the_file_and_the_centring_grid(trained_net):
    net, _ = trained_net
    volume, centres = _planted(4)
    zoom = 0.5  # the file is twice as fine as the centring grid
    file_xyz = centres[:, ::-1] / zoom
    after, _ = centre_positions(net, volume, zoom, file_xyz + 1.0, DIAMETER_PX)
    assert np.median(np.linalg.norm(after - file_xyz, axis=1)) < 1.2  # 0.6 px of the centring grid


def test_training_reports_the_validation_distance_of_its_best_weights(trained_net):
    _, distance = trained_net
    assert 0 < distance < 1.0


def test_a_checkpoint_carries_its_centring_network_and_one_without_has_none(tmp_path):
    config = recipe_config("deepetpicker", diameter_a=200.0, model_size="small", patch_size=32)
    model = build_model(config.backbone, config.out_channels, config.model_size)
    weights = build_centring_network().state_dict()
    save_checkpoint(tmp_path / "with.pt", model, config, 1, 0.5, centring=weights)
    save_checkpoint(tmp_path / "without.pt", model, config, 1, 0.5)
    loaded = load_centring(tmp_path / "with.pt")
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, weights[name])
    assert not loaded.training
    assert load_centring(tmp_path / "without.pt") is None


def test_the_centring_scale_is_twenty_pixels_but_never_coarser_than_training_nor_finer_than_the_file():
    assert centring_diameter_px(10.0, 33.0) == 20.0
    assert centring_diameter_px(10.0, 13.4) == 13.4
    assert centring_diameter_px(10.0, 6.8) == 10.0
    assert crop_size(20.0) == 24 and crop_size(5.0) == 16


def test_negative_centring_steps_are_refused():
    with pytest.raises(ValueError, match="centring_steps must be >= 0"):
        recipe_config("deepetpicker", diameter_a=200.0, centring_steps=-1).validate()
    with pytest.raises(ValueError, match="steps must be > 0"):
        train_centring([_planted(1, n=2)], [], DIAMETER_PX, steps=0)


def test_no_centring_network_is_trained_where_the_validation_particles_could_not_show_it_helps(
    tiny_dataset, tmp_path, caplog
):
    out, summary = tiny_dataset
    truth = io.read_coordinates(out / "coordinates" / "4v94" / "tomo_001.txt")
    io.write_coordinates(tmp_path / "val.txt", truth.iloc[: CENTRING_EVIDENCE - 1])
    argv = [
        "train",
        "--tomograms",
        out / "tomograms" / "tomo_000.mrc",
        "--coordinates",
        out / "coordinates" / "4v94" / "tomo_000.txt",
        "--val-tomograms",
        out / "tomograms" / "tomo_001.mrc",
        "--val-coordinates",
        tmp_path / "val.txt",
        "--diameter",
        summary["diameters_a"]["4v94"],
        "--recipe",
        "deepetpicker",
        "--model-size",
        "small",
        "--patch-size",
        "32",
        "--epochs",
        "1",
        "--centring-steps",
        "20",
        "--out",
        tmp_path / "model",
    ]
    with caplog.at_level(logging.INFO):
        assert main([str(a) for a in argv]) == 0
    assert f"validation tomograms hold {CENTRING_EVIDENCE - 1} particle(s)" in caplog.text
    assert load_centring(tmp_path / "model" / "model.pt") is None
    assert read_checkpoint(tmp_path / "model" / "model.pt")["config"]["centring_diameter_px"] == 0.0


class _BrightestVoxel(torch.nn.Module):
    """A stand-in centring network whose heatmap is the crop itself: it finds the brightest voxel."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 50.0 * images


def test_a_second_pass_that_would_jump_onto_another_feature_keeps_the_first_answer():
    # crops are 16 px (diameter 12): from the pick at x = 20 the first pass sees A (x = 26) only;
    # from A the second sees the brighter B (x = 33), 7 px away, beyond 0.15 diameter (1.8 px)
    volume = np.zeros((32, 32, 48), np.float32)
    volume[16, 16, 26], volume[16, 16, 33] = 1.0, 2.0
    pick = np.array([[20.0, 16.0, 16.0]])
    first, _ = centre_positions(_BrightestVoxel(), volume, 1.0, pick, DIAMETER_PX, passes=1)
    np.testing.assert_allclose(first, [[26.0, 16.0, 16.0]], atol=1e-3)
    np.testing.assert_allclose(centre_positions(_BrightestVoxel(), volume, 1.0, pick, DIAMETER_PX)[0], first)
    assert centre_positions(_BrightestVoxel(), volume, 1.0, pick, DIAMETER_PX, passes=3)[0][0, 0] == pytest.approx(26.0)
    with pytest.raises(ValueError, match="passes must be >= 1"):
        centre_positions(_BrightestVoxel(), volume, 1.0, pick, DIAMETER_PX, passes=0)


class _FooledInOneView(_BrightestVoxel):
    """Finds the brightest voxel, except in the one flip that shows the crop's first corner
    marked: that view alone takes a fixed voxel near the corner for the centre."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        heatmap = super().forward(images).clone()
        heatmap[images[:, 0, 0, 0, 0] > 0.5, 0, 2, 2, 2] = 1000.0
        return heatmap


def test_one_flip_that_takes_another_feature_for_the_centre_does_not_move_the_answer():
    # crops of 16 px: the pick at x = 20 crops from the corner (8, 8, 12), marked; the particle is at x = 22.
    # Averaging the eight flips would answer x = 21 (7/8 × 22 + 1/8 × 14)
    volume = np.zeros((32, 32, 48), np.float32)
    volume[16, 16, 22], volume[8, 8, 12] = 1.0, 0.6
    found, _ = centre_positions(_FooledInOneView(), volume, 1.0, np.array([[20.0, 16.0, 16.0]]), DIAMETER_PX, passes=1)
    np.testing.assert_allclose(found, [[22.0, 16.0, 16.0]], atol=1e-3)


def test_picks_a_template_placed_are_centred_until_they_converge_and_dropped_when_they_do_not(tmp_path):
    # 10 Å/px, particles of 120 Å: 12 px in the file and at the centring scale (crops of 16 px).
    # Row y = 8: ever brighter voxels 7 px apart, each pass from x = 20 jumps on to the next;
    # row y = 24: one particle 3 px from its pick, found by the first pass and confirmed by the second
    volume = np.random.default_rng(0).normal(0, 0.01, (32, 32, 72)).astype(np.float32)
    for k, x in enumerate((26, 33, 40, 47, 54, 61)):
        volume[16, 8, x] = 1.0 + k
    volume[16, 24, 23] = 1.0
    io.write_mrc(tmp_path / "t.mrc", volume, 10.0)
    config = recipe_config("tomocpt", diameter_a=120.0, classes=["a"])
    config.centring_diameter_px = DIAMETER_PX
    picks = pd.DataFrame({"tomo_name": "t", "x": 20.0, "y": [8.0, 24.0], "z": 16.0, "score": [0.9, 0.8], "class_id": 1})
    template = {0: ParticleTemplate(np.ones((15, 15, 15), np.float32), 0.0, 1.0, SPARSE_NETWORK_WEIGHT)}
    placed = centre_picks(picks, tmp_path / "t.mrc", config, _BrightestVoxel(), templates=template)
    np.testing.assert_allclose(placed[["x", "y", "z"]].to_numpy(), [[23, 24, 16]], atol=0.01)
    # from the score map: the first pass moves both, the capped second one refuses the wanderer's next jump
    found_on_the_score_map = centre_picks(picks, tmp_path / "t.mrc", config, _BrightestVoxel())
    np.testing.assert_allclose(found_on_the_score_map[["x", "y"]].to_numpy(), [[26, 8], [23, 24]], atol=0.01)
    xyz = picks[["x", "y", "z"]].to_numpy()
    positions, converged = centre_positions(_BrightestVoxel(), volume, 1.0, xyz, DIAMETER_PX, converge=True)
    np.testing.assert_allclose(positions[:, 0], [26 + 7 * (CONVERGING_PASSES - 1), 23], atol=0.01)
    assert converged.tolist() == [False, True]
    with pytest.raises(ValueError, match="passes must be >= 2 to converge"):
        centre_positions(_BrightestVoxel(), volume, 1.0, xyz, DIAMETER_PX, passes=1, converge=True)


def test_the_refining_pass_removes_the_pull_back_towards_picks_that_started_far_off(trained_net):
    net, _ = trained_net
    volume, centres = _planted(4)
    rng = np.random.default_rng(7)
    direction = rng.normal(size=centres.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    picks_xyz = (centres + 0.3 * DIAMETER_PX * direction)[:, ::-1]  # the edge of the training offsets
    towards_pick = [
        float(
            ((centre_positions(net, volume, 1.0, picks_xyz, DIAMETER_PX, passes=n)[0][:, ::-1] - centres) * direction)
            .sum(1)
            .mean()
        )
        for n in (1, 2)
    ]
    # one pass leaves them 0.38 px on the pick's side, the second 0.14 px
    assert towards_pick[1] < towards_pick[0] - 0.1, towards_pick


@pytest.fixture
def recorded(monkeypatch):
    """The labelled centres per tomogram the centring network learns from, and the (name,
    particles) of each tomogram of its evidence; the check keeps every network."""
    learned, checked = [], []
    real_train_centring = train_module.train_centring

    def recording_train_centring(pairs, validation, *args, **kwargs):
        learned.extend(len(centres) for _, centres in pairs)
        return real_train_centring(pairs, validation, *args, **kwargs)

    def recording_centring_helps(model, config, centring, evidence, device, templates=None):
        checked.extend((t.name, len(t.xyz_px)) for t in evidence)
        return True

    monkeypatch.setattr(train_module, "train_centring", recording_train_centring)
    monkeypatch.setattr(train_module, "centring_helps", recording_centring_helps)
    return learned, checked


def _train_argv(tomograms, coordinates, summary, out) -> list[str]:
    argv = ["train", "--tomograms", *tomograms, "--coordinates", coordinates]
    argv += ["--diameter", summary["diameters_a"]["4v94"], "--recipe", "deepetpicker", "--model-size", "small"]
    argv += ["--patch-size", "32", "--epochs", "1", "--centring-steps", "20", "--out", out]
    return [str(a) for a in argv]


def test_where_the_validation_holds_few_particles_a_share_of_many_training_labels_is_held_out_to_check_centring(
    tmp_path, recorded
):
    summary = simulate_dataset(tmp_path / "data", n_tomograms=6, config=TINY, seed=5)
    tomograms = sorted((tmp_path / "data" / "tomograms").glob("*.mrc"))
    truth = io.read_coordinates(tmp_path / "data" / "coordinates" / "4v94.star")
    training = truth[truth["tomo_name"] != tomograms[-1].stem]
    assert len(training) >= ENOUGH_PARTIAL_LABELS
    learned, checked = recorded
    io.write_coordinates(
        tmp_path / "val.star", truth[truth["tomo_name"] == tomograms[-1].stem].iloc[:2], pixel_size_a=TINY.pixel_size_a
    )
    io.write_coordinates(tmp_path / "training.star", training, pixel_size_a=TINY.pixel_size_a)
    argv = _train_argv(tomograms[:-1], tmp_path / "training.star", summary, tmp_path / "model")
    argv += ["--val-tomograms", str(tomograms[-1]), "--val-coordinates", str(tmp_path / "val.star")]
    assert main(argv) == 0

    held_out = round(train_module.CENTRING_HOLDOUT_FRACTION * len(training))
    assert sum(learned) == len(training) - held_out
    assert checked[0] == (tomograms[-1].stem, 2)
    assert sum(n for _, n in checked[1:]) == held_out
    assert {name for name, _ in checked[1:]} <= {t.stem for t in tomograms[:-1]}
    assert load_centring(tmp_path / "model" / "model.pt") is not None


@pytest.mark.parametrize("n_tomograms,enough_labels", [(1, ENOUGH_PARTIAL_LABELS), (1, 10), (6, ENOUGH_PARTIAL_LABELS)])
def test_without_validation_tomograms_the_centring_network_is_checked_on_particles_it_did_not_learn_from(
    tmp_path, recorded, caplog, monkeypatch, n_tomograms, enough_labels
):
    monkeypatch.setattr(train_module, "ENOUGH_PARTIAL_LABELS", enough_labels)
    summary = simulate_dataset(tmp_path / "data", n_tomograms=n_tomograms, config=TINY, seed=5)
    tomograms = sorted((tmp_path / "data" / "tomograms").glob("*.mrc"))
    truth = io.read_coordinates(tmp_path / "data" / "coordinates" / "4v94.star")
    learned, checked = recorded
    with caplog.at_level(logging.INFO):
        assert (
            main(_train_argv(tomograms, tmp_path / "data" / "coordinates" / "4v94.star", summary, tmp_path / "m")) == 0
        )

    if n_tomograms == 1 and len(truth) >= enough_labels:  # it trains and validates: a share is held out
        held_out = round(train_module.CENTRING_HOLDOUT_FRACTION * len(truth))
        assert sum(learned) == len(truth) - held_out
        assert checked == [(tomograms[0].stem, held_out)]
        assert load_centring(tmp_path / "m" / "model.pt") is not None
    elif n_tomograms == 1:  # no particle it did not learn from, too few to hold out
        assert len(truth) < ENOUGH_PARTIAL_LABELS
        assert learned == [] and checked == []
        assert "validation tomograms hold 0 particle(s)" in caplog.text
        assert load_centring(tmp_path / "m" / "model.pt") is None
    else:  # the last tomogram is split off to validate
        split_off = (truth["tomo_name"] == tomograms[-1].stem).sum()
        assert split_off >= CENTRING_EVIDENCE
        assert sum(learned) == len(truth) - split_off
        assert checked == [(tomograms[-1].stem, split_off)]
