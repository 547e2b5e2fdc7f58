"""Particle templates: local matching, the reference-free average of a few labelled particles,
the combined score, the checkpoint round trip, and training and picking with them."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from tomocpt_scipion.engine import io, particle_template
from tomocpt_scipion.engine import train as train_module
from tomocpt_scipion.engine.checkpoint import load_model, load_templates, save_checkpoint
from tomocpt_scipion.engine.cli import main
from tomocpt_scipion.engine.data import prepare_tomogram
from tomocpt_scipion.engine.models import build_network
from tomocpt_scipion.engine.particle_template import (
    COMPLETE_NETWORK_WEIGHT,
    SPARSE_NETWORK_WEIGHT,
    ParticleTemplate,
    build_template,
    combined_scores,
    local_match,
    particle_boxes,
    reference_free_average,
    rotation_set,
    template_geometry,
    template_matches,
)
from tomocpt_scipion.engine.predict import predict_tomograms, template_rescored
from tomocpt_scipion.engine.simulate import species_density
from tomocpt_scipion.engine.train import particle_templates, train

from .test_train import _config, _inputs


@pytest.fixture(autouse=True)
def _fewer_rotations(monkeypatch):
    """100 rotations instead of 1000: the tiny trainings below build and match templates in seconds."""
    monkeypatch.setattr(particle_template, "N_ROTATIONS", 100)


#: Å per pixel at which a ribosome (4v94) is 10 px across, the proteasome (4cr2) about 8
PIXEL_A = 33.3


def _boxed(density: np.ndarray, box: int) -> np.ndarray:
    """``density`` centred in a (box, box, box) array of zeros."""
    boxed = np.zeros((box,) * 3, np.float32)
    corner = (box - density.shape[0]) // 2
    boxed[(slice(corner, corner + density.shape[0]),) * 3] = density
    return boxed


def _rotated(density: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    centre = (np.array(density.shape) - 1) / 2
    return ndimage.affine_transform(density, rotation, offset=centre - rotation @ centre, order=1)


def _crowd(seed: int = 0, noise: float = 0.4):
    """Ribosomes and proteasomes in random orientations on a grid in noise (protein dark), and
    the centres (z, y, x) of each."""
    rng = np.random.default_rng(seed)
    densities = {name: species_density(name, PIXEL_A) for name in ("4v94", "4cr2")}
    volume = np.zeros((28, 100, 100), np.float32)
    centres = {name: [] for name in densities}
    sites = [(14, y, x) for y in range(12, 90, 19) for x in range(12, 90, 19)]
    for i, site in enumerate(rng.permutation(sites)):
        name = ("4v94", "4cr2")[i % 2]
        density = _rotated(densities[name], Rotation.random(random_state=seed * 100 + i).as_matrix())
        half = density.shape[0] // 2
        volume[tuple(slice(c - half, c - half + density.shape[0]) for c in site)] += density
        centres[name].append(site)
    noisy = -volume + rng.normal(0, noise, volume.shape).astype(np.float32)
    return noisy, {name: np.array(c, float) for name, c in centres.items()}


def test_local_match_finds_a_planted_rotated_particle_and_its_offset():
    density = species_density("4v94", PIXEL_A)
    geometry = template_geometry(10.0)
    template = _boxed(density, geometry.box)
    rotations = rotation_set(50)
    volume = np.random.default_rng(1).normal(0, 0.2, (40, 40, 40)).astype(np.float32)
    # the particle turned by rotation 7 of the set, centred at (20, 21, 19)
    turned = _rotated(template, rotations[7][::-1, ::-1].astype(float))  # the set's (x, y, z) matrix on (z, y, x)
    half = geometry.box // 2
    volume[20 - half : 20 + half + 1, 21 - half : 21 + half + 1, 19 - half : 19 + half + 1] += turned
    ncc, rotation, shift = local_match(
        particle_boxes(volume, np.array([[18.0, 22.0, 19.0]]), geometry.box), template, geometry, rotations
    )
    assert rotation[0] == 7
    np.testing.assert_allclose(shift[0], [2, -1, 0], atol=0.25)  # the box centre (18, 22, 19) + shift = the particle
    assert ncc[0] > 0.5
    background = local_match(
        particle_boxes(volume, np.array([[20.0, 21.0, 4.0]]), geometry.box), template, geometry, rotations
    )[0]
    assert background[0] < 0.2


def test_a_match_moves_a_pick_onto_an_off_grid_particle_centre_within_a_quarter_pixel():
    density = species_density("4v94", PIXEL_A)
    geometry = template_geometry(10.0)
    template = _boxed(density, geometry.box)
    half = geometry.box // 2
    volume = np.random.default_rng(3).normal(0, 0.1, (40, 40, 40)).astype(np.float32)
    true_centres = []
    for offset in ([0.4, 0.0, -0.3], [-0.2, 0.35, 0.1]):
        placed = np.zeros_like(volume)
        placed[20 - half : 20 + half + 1, 20 - half : 20 + half + 1, 20 - half : 20 + half + 1] = template
        volume_one = volume + ndimage.shift(placed, offset, order=3)
        _, matched = template_matches(
            volume_one, np.array([[21.0, 19.0, 20.0]]), template, 10.0, np.eye(3, dtype=np.float32)[None]
        )
        true_centres.append(np.abs(matched[0] - (20 + np.array(offset))).max())
    assert max(true_centres) < 0.25, true_centres


def test_a_pick_on_the_rim_of_its_particle_moves_onto_its_centre_with_a_template_made_in_a_smaller_box():
    """Without a centring network a sparse model's score map can peak at a particle's rim, up to
    half a diameter off (WBP benchmark, 10 %-label ribosomes): the search reaches that far. The
    template is boxed for the narrower search that made it."""
    density = species_density("4v94", PIXEL_A)
    kept = _boxed(density, template_geometry(10.0).box)
    assert kept.shape[0] < template_geometry(10.0, particle_template.PICK_SHIFT_FRACTION).box
    volume = np.random.default_rng(5).normal(0, 0.1, (48, 48, 48)).astype(np.float32)
    half = kept.shape[0] // 2
    volume[24 - half : 24 + half + 1, 22 - half : 22 + half + 1, 25 - half : 25 + half + 1] += kept
    pick = np.array([[24.0, 26.5, 27.0]])  # 4.9 px (0.49 diameters) from the particle
    ncc, matched = template_matches(volume, pick, kept, 10.0, np.eye(3, dtype=np.float32)[None])
    np.testing.assert_allclose(matched[0], [24, 22, 25], atol=0.25)
    assert ncc[0] > 0.8


def test_two_picks_of_one_particle_move_onto_it_and_merge(tmp_path, monkeypatch):
    monkeypatch.setattr(particle_template, "N_ROTATIONS", 1)  # the identity below: the particle is not turned
    monkeypatch.setattr(particle_template, "rotation_set", lambda n=None: np.eye(3, dtype=np.float32)[None])
    config = _config("tomopicker", 333.0, epochs=1)
    pixel_a = 333.0 / (config.target_diameter_px * particle_template.TEMPLATE_SCALE)  # the template scale
    density = species_density("4v94", pixel_a)
    geometry = template_geometry(config.target_diameter_px * particle_template.TEMPLATE_SCALE)
    template = _boxed(density, geometry.box)
    volume = np.random.default_rng(4).normal(0, 0.1, (48, 64, 64)).astype(np.float32)
    half = geometry.box // 2
    volume[24 - half : 24 + half + 1, 30 - half : 30 + half + 1, 33 - half : 33 + half + 1] += template
    io.write_mrc(tmp_path / "t.mrc", volume, pixel_a)
    picks = pd.DataFrame(
        {"tomo_name": "t", "x": [31.0, 35.0], "y": [31.0, 29.0], "z": [23.0, 25.0], "score": [0.6, 0.5], "class_id": 1}
    )
    moved = template_rescored(
        picks, tmp_path / "t.mrc", config, {0: ParticleTemplate(template, 0.0, 1.0, SPARSE_NETWORK_WEIGHT)}
    )
    assert len(moved) == 1
    np.testing.assert_allclose(moved[["x", "y", "z"]].to_numpy()[0], [33, 30, 24], atol=0.5)


def test_a_template_from_three_labelled_ribosomes_tells_ribosomes_from_proteasomes():
    volume, centres = _crowd()
    ribosomes, proteasomes = centres["4v94"], centres["4cr2"]
    rng = np.random.default_rng(2)
    picks = np.concatenate([ribosomes, proteasomes]) + rng.normal(0, 1, (len(ribosomes) + len(proteasomes), 3))
    candidates = pd.DataFrame(picks, columns=["z", "y", "x"]).assign(score=rng.uniform(0.3, 0.9, len(picks)))
    rotations = rotation_set(300)
    template = build_template(
        [volume], [ribosomes[:3]], [candidates], 10.0, len(ribosomes), SPARSE_NETWORK_WEIGHT, rotations
    )
    on_ribosomes = template_matches(volume, ribosomes[3:], template.volume, 10.0, rotations)[0]
    on_proteasomes = template_matches(volume, proteasomes, template.volume, 10.0, rotations)[0]
    # how often an unlabelled ribosome matches better than a proteasome (0.5: no better than chance)
    assert (on_ribosomes[:, None] > on_proteasomes[None]).mean() > 0.9
    assert template.ncc_std > 0


def test_many_labelled_particles_choose_the_first_reference_among_a_few_and_still_average_the_particle(
    monkeypatch,
):
    volume, centres = _crowd()
    ribosomes, proteasomes = centres["4v94"], centres["4cr2"]
    geometry = template_geometry(10.0)
    rotations = rotation_set(300)
    matched = []

    def counting(boxes, *args):
        matched.append(len(boxes))
        return local_match(boxes, *args)

    monkeypatch.setattr(particle_template, "local_match", counting)
    average = reference_free_average(particle_boxes(volume, ribosomes, geometry.box), geometry, rotations)
    few, rounds = particle_template.REFERENCE_CANDIDATES, particle_template.ALIGNMENT_ROUNDS
    # every particle against every other one would be 13 × 12 matches before the rounds
    assert sum(matched) == few * (few - 1) + rounds * len(ribosomes) < len(ribosomes) * (len(ribosomes) - 1)
    on_ribosomes = template_matches(volume, ribosomes, average, 10.0, rotations)[0]
    on_proteasomes = template_matches(volume, proteasomes, average, 10.0, rotations)[0]
    assert (on_ribosomes[:, None] > on_proteasomes[None]).mean() > 0.9


def test_a_template_off_its_centre_moves_back_to_where_the_labelled_centres_fall_despite_one_label_off():
    density = species_density("4v94", PIXEL_A)
    geometry = template_geometry(10.0)
    centred = _boxed(density, geometry.box)
    offset_zyx = np.array([0.0, 1.5, -1.0])
    template = ndimage.shift(centred, offset_zyx, order=1)
    # labelled particles on their centres, each turned its own way, and one labelled 3 px off
    turned = [_rotated(density, Rotation.random(random_state=i).as_matrix()) for i in range(7)]
    labelled = np.stack(
        [_boxed(d, geometry.box) for d in turned[:6]]
        + [ndimage.shift(_boxed(turned[6], geometry.box), (0, 3, 3), order=1)]
    )

    def centroid(volume):
        weights = np.clip(volume, 0, None)
        return np.array([(weights * axis).sum() / weights.sum() for axis in np.indices(volume.shape)])

    moved = particle_template.label_centred(template, labelled, geometry, rotation_set(300))
    assert np.linalg.norm(centroid(template) - centroid(centred) - offset_zyx) < 0.1
    assert np.linalg.norm(centroid(moved) - centroid(centred)) < 0.3, centroid(moved) - centroid(centred)


def test_the_combined_score_of_a_sparse_model_follows_the_template_and_the_network_breaks_its_ties():
    network = np.array([0.9, 0.3, 0.6, 0.6])
    ncc = np.array([0.10, 0.30, 0.20, 0.25])
    scores = combined_scores(network, ncc, 0.2, 0.05, SPARSE_NETWORK_WEIGHT)
    assert np.argsort(-scores).tolist() == [1, 3, 2, 0]
    tied = combined_scores(np.array([0.4, 0.8]), np.array([0.2, 0.2]), 0.2, 0.05, SPARSE_NETWORK_WEIGHT)
    assert tied[1] > tied[0]
    assert np.all((scores > 0) & (scores < 1))


def test_the_network_of_a_complete_annotation_outweighs_a_small_difference_of_template_match():
    network, ncc = np.array([0.9, 0.3]), np.array([0.19, 0.21])
    assert np.argmax(combined_scores(network, ncc, 0.2, 0.05, SPARSE_NETWORK_WEIGHT)) == 1
    assert np.argmax(combined_scores(network, ncc, 0.2, 0.05, COMPLETE_NETWORK_WEIGHT)) == 0


def test_templates_round_trip_through_the_checkpoint(tmp_path):
    config = _config("tomopicker", 200.0, epochs=1)
    model = build_network(config.backbone, config.out_channels, config.model_size)
    volume = np.random.default_rng(0).normal(size=(19, 19, 19)).astype(np.float32)
    template = ParticleTemplate(volume, 0.21, 0.04, COMPLETE_NETWORK_WEIGHT)
    save_checkpoint(tmp_path / "model.pt", model, config, 1, 0.5, templates={0: template})
    read = load_templates(tmp_path / "model.pt")
    assert list(read) == [0]
    np.testing.assert_array_equal(read[0].volume, template.volume)
    assert (read[0].ncc_mean, read[0].ncc_std, read[0].network_weight) == (0.21, 0.04, COMPLETE_NETWORK_WEIGHT)
    older = {key: value for key, value in template.to_payload().items() if key != "network_weight"}
    assert ParticleTemplate.from_payload(older).network_weight == SPARSE_NETWORK_WEIGHT
    save_checkpoint(tmp_path / "plain.pt", model, config, 1, 0.5)
    assert load_templates(tmp_path / "plain.pt") == {}


def test_a_sparse_annotation_trains_a_template_that_rescores_the_picks(tiny_dataset, tmp_path, caplog, capsys):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("tomopicker", diameter, epochs=1, particle_template=True)
    with caplog.at_level(logging.INFO):
        result = train(tomograms, coordinates.groupby("tomo_name").head(3), config, tmp_path / "model")
        templates = load_templates(result.checkpoint)
        assert list(templates) == [0]
        assert templates[0].network_weight == SPARSE_NETWORK_WEIGHT
        # one tomogram trains, one validates
        assert "particle template made from 3 labelled particle(s)" in caplog.text
        predict_tomograms(result.checkpoint, tomograms[:1], tmp_path / "picks", refine="centroid")
    assert "rescored by their match to the particle template of" in caplog.text
    main(["inspect", str(result.checkpoint)])
    assert "particle template particle;" in capsys.readouterr().out
    picks = pd.read_csv(tmp_path / "picks" / "picks.csv")
    threshold = load_model(result.checkpoint)[1].thresholds[0]
    assert len(picks) and picks["score"].min() >= threshold


def test_a_finished_model_makes_its_templates_again_from_a_training_annotation(tiny_dataset, tmp_path):
    """What `accuracy.py --reuse-models --recalibrate` does to measure a change of the template
    rules without training again."""
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("tomopicker", diameter, epochs=1, particle_template=True)
    sparse = coordinates.groupby("tomo_name").head(3)
    result = train(tomograms, sparse, config, tmp_path / "model")
    model, trained_config = load_model(result.checkpoint)
    name = Path(tomograms[0]).stem
    few = prepare_tomogram(tomograms[0], sparse[sparse["tomo_name"] == name], trained_config)
    made = particle_templates(model, trained_config, [few], [3])
    assert list(made) == [0]
    assert made[0].volume.shape == load_templates(result.checkpoint)[0].volume.shape
    assert made[0].network_weight == SPARSE_NETWORK_WEIGHT
    every = coordinates[coordinates["tomo_name"] == name]
    complete = prepare_tomogram(tomograms[0], every, trained_config)
    assert particle_templates(model, trained_config, [complete], [len(every)])[0].network_weight == (
        COMPLETE_NETWORK_WEIGHT
    )


def _regression_model_picking(tiny_dataset, tmp_path, monkeypatch, heights: list[float]):
    """A tomoCPT-loss model (one epoch) whose training picks are stubbed: the labelled centres of
    the first tomogram with these heights. Returns the model, its config and that tomogram."""
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("deepetpicker", diameter, epochs=1, loss="huber-gradient", label="gaussian")
    model, config = load_model(train(tomograms, coordinates, config, tmp_path).checkpoint)
    config.particle_template, config.expected_particles = True, 10.0
    name = Path(tomograms[0]).stem
    tomogram = prepare_tomogram(tomograms[0], coordinates[coordinates["tomo_name"] == name], config)
    found = pd.DataFrame(tomogram.xyz_px[: len(heights)], columns=["x", "y", "z"])
    found = found.assign(score=heights, class_id=1, tomo_name=name)
    monkeypatch.setattr(train_module, "training_scale_picks", lambda *args, **kwargs: [found])
    return model, config, tomogram


def test_a_regression_of_gaussian_centres_is_rescored_by_a_template_as_probabilities_are(
    tiny_dataset, tmp_path, monkeypatch
):
    """tomoCPT's heights are no probabilities, but their logit ranks picks too (README: F1 0.45 → 0.73, 3 seeds)."""
    model, config, tomogram = _regression_model_picking(tiny_dataset, tmp_path, monkeypatch, [0.4, 0.3, 0.2, 0.1])
    made = particle_templates(model, config, [tomogram], [len(tomogram.xyz_px)])
    assert list(made) == [0] and made[0].network_weight == COMPLETE_NETWORK_WEIGHT
    assert made[0].ncc_std > 0


def test_a_class_the_network_picks_nothing_of_gets_no_template_and_a_warning(
    tiny_dataset, tmp_path, monkeypatch, caplog
):
    """The match is standardised over the network's training picks: without any it has no scale."""
    model, config, tomogram = _regression_model_picking(tiny_dataset, tmp_path, monkeypatch, [])
    with caplog.at_level(logging.WARNING):
        assert particle_templates(model, config, [tomogram], [len(tomogram.xyz_px)]) == {}
    assert "no particle template, the network picks nothing" in caplog.text


def test_a_complete_annotation_trains_a_template_that_weighs_the_network_more(tiny_dataset, tmp_path):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("tomopicker", diameter, epochs=1, particle_template=True)
    result = train(tomograms, coordinates, config, tmp_path)
    assert [t.network_weight for t in load_templates(result.checkpoint).values()] == [COMPLETE_NETWORK_WEIGHT]


def test_a_dice_model_of_a_complete_annotation_trains_a_template_expecting_its_labelled_particles(
    tiny_dataset, tmp_path
):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("deepetpicker", diameter, epochs=1, particle_template=True)
    assert config.expected_particles is None
    result = train(tomograms, coordinates, config, tmp_path)
    assert [t.network_weight for t in load_templates(result.checkpoint).values()] == [COMPLETE_NETWORK_WEIGHT]
    assert load_model(result.checkpoint)[1].expected_particles == len(coordinates) / len(tomograms)


def test_only_the_best_network_picks_per_expected_particle_are_matched_and_kept(monkeypatch):
    monkeypatch.setattr(particle_template, "rotation_set", lambda n=None: np.eye(3, dtype=np.float32)[None])
    volume = np.random.default_rng(5).normal(size=(30, 60, 60)).astype(np.float32)
    picks = pd.DataFrame(
        {
            "x": np.arange(6) * 8.0 + 10,
            "y": 30.0,
            "z": 15.0,
            "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            "class_id": [1, 1, 1, 1, 1, 2],
        }
    )
    template = ParticleTemplate(np.ones((15, 15, 15), np.float32), 0.0, 1.0, SPARSE_NETWORK_WEIGHT)
    kept = particle_template.rescored(picks, volume, 1.0, [8.0, 8.0], {0: template}, expected_particles=0.5)
    # candidate_limit(0.5) = 2 picks of class 1 are matched; class 2 has no template and stays
    assert particle_template.candidate_limit(0.5) == 2
    assert sorted(kept["class_id"].tolist()) == [1, 1, 2]
    assert kept.loc[kept["class_id"] == 2, "score"].tolist() == [0.4]
