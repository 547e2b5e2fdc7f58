"""Training: every recipe learns on a tiny volume, resumes exactly, runs under DDP, refuses bad input."""

import csv
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.checkpoint import load_model, read_checkpoint
from tomocpt_scipion.engine.cli import main
from tomocpt_scipion.engine.config import recipe_config
from tomocpt_scipion.engine.train import train

#: small networks and patches that fit the tiny volumes, CPU-friendly, no centring network nor particle template, one
#: grid per epoch (the epoch's length has its own tests in test_data.py)
RECIPE_SETTINGS = {
    "tomocpt": dict(model_size="small", patch_size=64, batch_size=2, centring_steps=0, particle_template=False),
    "deepetpicker": dict(model_size="small", patch_size=32, batch_size=4, centring_steps=0, particle_template=False),
    "tomopicker": dict(
        model_size="small",
        patch_size=32,
        batch_size=4,
        expected_particles=12,
        centring_steps=0,
        min_patches_per_epoch=0,
        particle_template=False,  # minutes on a sparse annotation; test_particle_template.py trains with it
    ),
}


def _inputs(tiny_dataset):
    out, summary = tiny_dataset
    tomograms = [out / p for p in summary["tomograms"].values()]
    coordinates = io.read_coordinates(out / "coordinates" / "4v94.star")
    return tomograms, coordinates, summary["diameters_a"]["4v94"]


def _config(recipe, diameter, **extra):
    return recipe_config(recipe, diameter_a=diameter, **{**RECIPE_SETTINGS[recipe], **extra})


@pytest.mark.parametrize("recipe,epochs", [("tomocpt", 4), ("deepetpicker", 5), ("tomopicker", 5)])
def test_each_recipe_lowers_the_validation_loss(tiny_dataset, tmp_path, recipe, epochs):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    result = train(tomograms, coordinates, _config(recipe, diameter, epochs=epochs), tmp_path)
    losses = [row["val_loss"] for row in result.history]
    assert len(losses) == epochs
    assert min(losses[1:]) < losses[0], losses
    model, config = load_model(result.checkpoint)
    assert config.recipe == recipe and config.diameter_a == diameter
    assert config.voxel_size_a == pytest.approx(diameter / config.target_diameter_px)
    with open(tmp_path / "training_log.csv") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == list(range(1, epochs + 1))
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    payload = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert payload["epoch"] == result.best_epoch


@pytest.mark.parametrize("recipe", ["deepetpicker", "tomopicker"])
def test_the_calibrated_threshold_round_trips_through_checkpoint_json_and_inspect(
    tiny_dataset, tmp_path, recipe, capsys
):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    result = train(tomograms, coordinates, _config(recipe, diameter, epochs=3), tmp_path)
    _, config = load_model(result.checkpoint)
    assert len(config.thresholds) == 1 and 0 < config.thresholds[0] < 1
    assert config.thresholds == result.config.thresholds
    summary = json.loads((tmp_path / "model.json").read_text())
    assert summary["config"]["thresholds"] == config.thresholds
    assert summary["config"]["score_temperature"] == config.score_temperature >= 1
    assert main(["inspect", str(result.checkpoint)]) == 0
    assert f"score threshold particle {config.thresholds[0]:.3g}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "labelled,ensemble,radius_fraction,warned", [(3, 1, 0.25, True), (3, 2, 0.25, True), (12, 1, 0.5, False)]
)
def test_a_pu_recipe_on_sparse_labels_trains_on_its_sparse_label_radius_records_it_and_warns_once_of_few_labels(
    tiny_dataset, tmp_path, caplog, labelled, ensemble, radius_fraction, warned
):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("tomopicker", diameter, epochs=1, ensemble=ensemble)
    assert (config.label_radius_fraction, config.sparse_label_radius_fraction) == (0.5, 0.25)
    with caplog.at_level(logging.WARNING, logger="tomocpt_scipion.engine.train"):
        result = train(tomograms, coordinates.groupby("tomo_name").head(labelled), config, tmp_path)
    assert load_model(result.checkpoint)[1].label_radius_fraction == radius_fraction
    few_labels = [r.getMessage() for r in caplog.records if "labelled particle(s)" in r.getMessage()]
    if warned:
        expected_start = (
            f"Class particle: {labelled * len(tomograms)} labelled particle(s) in {len(tomograms)} training"
        )
        assert len(few_labels) == 1 and few_labels[0].startswith(expected_start), few_labels
    else:
        assert few_labels == []


@pytest.mark.parametrize("labelled_per_tomogram,keeps_last", [(2, True), (None, False)])
def test_a_partial_pu_validation_trains_every_epoch_keeps_the_last_weights_and_counts_over_all_tomograms(
    tiny_dataset, tmp_path, caplog, labelled_per_tomogram, keeps_last
):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    annotation = (
        coordinates if labelled_per_tomogram is None else coordinates.groupby("tomo_name").head(labelled_per_tomogram)
    )
    config = _config("tomopicker", diameter, epochs=4, patience=1)
    with caplog.at_level(logging.INFO, logger="tomocpt_scipion.engine"):
        result = train(tomograms, annotation, config, tmp_path)
    told = [r.getMessage() for r in caplog.records if "keeping the last weights" in r.getMessage()]
    assert len(told) == int(keeps_last), told
    counted = [r.getMessage() for r in caplog.records if "expected particles in" in r.getMessage()]
    assert len(counted) == int(keeps_last), counted
    if keeps_last:  # the count runs over the training tomograms' picks too
        assert f"expected particles in {len(tomograms)} tomogram(s), 1 of them validation" in counted[0]
        assert len(result.history) == 4 and result.best_epoch == 4
        saved = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
        last = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)["model"]
        assert saved["epoch"] == 4
        assert all(torch.equal(saved["state_dict"][k], last[k]) for k in last)


class _Interrupt(Exception):
    pass


def test_resume_continues_an_interrupted_run_to_the_same_result(tiny_dataset, tmp_path):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = dict(recipe="deepetpicker", diameter=diameter, epochs=4, augment=["rot90", "flip", "affine"])
    straight = train(tomograms, coordinates, _config(**config), tmp_path / "straight")

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(tomograms, coordinates, _config(**config), tmp_path / "resumed", on_epoch_end=stop_after_two)
    resumed = train(tomograms, coordinates, _config(**config), tmp_path / "resumed", resume=True)
    assert [r["val_loss"] for r in resumed.history] == pytest.approx([r["val_loss"] for r in straight.history])
    a, b = (read_checkpoint(r.checkpoint)["state_dict"] for r in (straight, resumed))
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_finetuning_starts_from_the_trained_weights_with_a_lower_encoder_rate(tiny_dataset, tmp_path):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    base = train(tomograms, coordinates, _config("deepetpicker", diameter, epochs=2), tmp_path / "base")
    tuned = train(
        tomograms,
        coordinates,
        _config("deepetpicker", diameter, epochs=1, encoder_lr_factor=0.1),
        tmp_path / "tuned",
        finetune=base.checkpoint,
    )
    assert tuned.history[0]["val_loss"] < base.history[0]["val_loss"]


def test_ddp_with_two_gloo_processes_trains_one_model(tiny_dataset, tmp_path):
    out, summary = tiny_dataset
    tomograms = [str(out / p) for p in summary["tomograms"].values()]
    # two processes on the CPU, also where a GPU is there: with one GPU, rank 1 would ask for a second
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "tomocpt_scipion.engine",
        "train",
        "--tomograms",
        *tomograms,
        "--coordinates",
        str(out / "coordinates" / "4v94.star"),
        "--diameter",
        str(summary["diameters_a"]["4v94"]),
        "--recipe",
        "deepetpicker",
        "--model-size",
        "small",
        "--patch-size",
        "32",
        "--batch-size",
        "2",
        "--epochs",
        "2",
        "--centring-steps",
        "0",
        "--out",
        str(tmp_path / "ddp"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes" in result.stderr
    model, _ = load_model(tmp_path / "ddp" / "model.pt")
    with open(tmp_path / "ddp" / "training_log.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2


# ----------------------------------------------------------------------------- bad input
def test_coordinates_outside_the_tomogram_are_refused_with_the_file_and_position(tiny_dataset, tmp_path):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    bad = pd.concat([coordinates, io.coordinate_table([[500.0, 10, 10]], "tomo_000")], ignore_index=True)
    with pytest.raises(ValueError, match=r"tomo_000.mrc: 1 coordinate\(s\) outside .*\(500.0, 10.0, 10.0\)"):
        train(tomograms, bad, _config("deepetpicker", diameter, epochs=1), tmp_path)


def test_zero_diameter_is_refused(tiny_dataset, tmp_path):
    tomograms, coordinates, _ = _inputs(tiny_dataset)
    with pytest.raises(ValueError, match="particle diameter must be > 0 Å, got 0"):
        train(tomograms, coordinates, _config("deepetpicker", 0.0, epochs=1), tmp_path)


def test_missing_pixel_size_without_one_given_is_refused(tiny_dataset, tmp_path):
    _, coordinates, diameter = _inputs(tiny_dataset)
    path = tmp_path / "tomo_000.mrc"
    import mrcfile

    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((32, 64, 64), np.float32))
    with pytest.raises(ValueError, match="tomo_000.mrc: the MRC header holds no pixel size"):
        train(
            [path],
            coordinates[coordinates.tomo_name == "tomo_000"],
            _config("deepetpicker", diameter, epochs=1),
            tmp_path / "out",
        )


def test_expected_particles_below_the_labelled_count_is_refused(tiny_dataset, tmp_path):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    with pytest.raises(ValueError, match="expected particles per tomogram .* is smaller"):
        train(tomograms, coordinates, _config("tomopicker", diameter, epochs=1, expected_particles=2), tmp_path)


def test_pu_loss_without_expected_particles_is_refused(tiny_dataset, tmp_path):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("tomopicker", diameter, epochs=1)
    config.expected_particles = None
    with pytest.raises(ValueError, match="needs the expected number of particles"):
        train(tomograms, coordinates, config, tmp_path)


def test_a_finished_run_is_not_overwritten(tiny_dataset, tmp_path):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    train(tomograms, coordinates, _config("deepetpicker", diameter, epochs=1), tmp_path)
    with pytest.raises(FileExistsError, match="model.pt"):
        train(tomograms, coordinates, _config("deepetpicker", diameter, epochs=1), tmp_path)


def test_an_ensemble_trains_its_members_averages_their_scores_and_resumes_after_the_finished_ones(
    tiny_dataset, tmp_path, capsys
):
    from tomocpt_scipion.engine.infer import run_network
    from tomocpt_scipion.engine.models import Ensemble
    from tomocpt_scipion.engine.preprocess import load_at_training_scale

    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("deepetpicker", diameter, epochs=1, ensemble=2, seed=5)
    result = train(tomograms, coordinates, config, tmp_path)
    ensemble, config = load_model(result.checkpoint)
    assert isinstance(ensemble, Ensemble) and config.ensemble == 2 and len(config.thresholds) == 1
    members = [load_model(tmp_path / f"member_{k}" / "model.pt") for k in (1, 2)]
    assert [c.seed for _, c in members] == [5, 6] and all(c.ensemble == 1 for _, c in members)
    volume = load_at_training_scale(tomograms[0], diameter, config.target_diameter_px, config.normalisation).volume
    each = [run_network(model, member_config, volume, tta=False) for model, member_config in members]
    assert not np.allclose(each[0], each[1])  # two seeds, two networks
    np.testing.assert_allclose(run_network(ensemble, config, volume, tta=False), np.mean(each, axis=0), atol=1e-4)
    with open(tmp_path / "training_log.csv") as handle:
        assert [(int(r["member"]), int(r["epoch"])) for r in csv.DictReader(handle)] == [(1, 1), (2, 1)]
    assert main(["inspect", str(result.checkpoint)]) == 0
    assert "ensemble of 2 × small resunet" in capsys.readouterr().out

    first = (tmp_path / "member_1" / "model.pt").read_bytes()
    (tmp_path / "member_2" / "model.pt").unlink()
    (tmp_path / "model.pt").unlink()
    train(
        tomograms, coordinates, _config("deepetpicker", diameter, epochs=1, ensemble=2, seed=5), tmp_path, resume=True
    )
    assert (tmp_path / "member_1" / "model.pt").read_bytes() == first
    assert (tmp_path / "model.pt").exists() and (tmp_path / "member_2" / "model.pt").exists()
