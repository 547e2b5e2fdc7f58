"""Pseudo-labels: which of a first model's picks join a sparse annotation, and the two-pass training."""

import logging

import pandas as pd
import pytest

from tomocpt_scipion.engine import pseudo_labels
from tomocpt_scipion.engine.checkpoint import load_model
from tomocpt_scipion.engine.config import recipe_config
from tomocpt_scipion.engine.infer import ScoreMap
from tomocpt_scipion.engine.outputs import TRAIN
from tomocpt_scipion.engine.train import train

from .test_train import _config, _inputs


def _fake_picks(monkeypatch, picks: pd.DataFrame, pixel_size_a: float):
    def scores(model, config, path, pixel_size, device):
        return ScoreMap(scores=None, zoom=1.0, pixel_size_a=pixel_size_a, original_shape=(1, 1, 1))

    monkeypatch.setattr(pseudo_labels, "predict_scores", scores)
    monkeypatch.setattr(pseudo_labels, "picks_from_scores", lambda score_map, config, name, **_: picks)


def test_the_most_confident_picks_away_from_the_labels_fill_half_of_the_missing_particles(monkeypatch, tmp_path):
    labelled = pd.DataFrame({"tomo_name": "t", "x": [50.0], "y": [50.0], "z": [20.0], "class_id": 1})
    picks = pd.DataFrame(
        {
            "tomo_name": "t",
            "x": [52.0, 100.0, 150.0, 200.0, 20.0],
            "y": [50.0, 100.0, 150.0, 200.0, 200.0],
            "z": [20.0] * 5,
            "score": [0.99, 0.9, 0.8, 0.7, 0.6],
            "class_id": 1,
        }
    )
    _fake_picks(monkeypatch, picks, pixel_size_a=10.0)
    config = recipe_config("tomopicker", diameter_a=200.0, expected_particles=7)  # radius 10 px
    assert pseudo_labels.pseudo_label_count(7, 1) == 3
    out = pseudo_labels.pseudo_labelled(None, config, [tmp_path / "t.mrc"], labelled)
    assert out.iloc[:1][["x", "y"]].values.tolist() == [[50.0, 50.0]]
    assert out.iloc[1:]["score"].tolist() == [0.9, 0.8, 0.7]  # the pick on the label is not added again


def test_pseudo_labels_need_the_expected_particle_count(tmp_path):
    config = recipe_config("tomopicker", diameter_a=200.0)
    with pytest.raises(ValueError, match="expected particles"):
        pseudo_labels.pseudo_labelled(None, config, [tmp_path / "t.mrc"], pd.DataFrame())


def test_a_sparse_annotation_trains_a_first_pass_then_again_on_labels_and_pseudo_labels(tiny_dataset, tmp_path, caplog):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    config = _config("tomopicker", diameter, epochs=2, pseudo_labels=True)
    with caplog.at_level(logging.INFO):
        result = train(tomograms, coordinates.groupby("tomo_name").head(3), config, tmp_path)
    assert (tmp_path / TRAIN.first_pass / TRAIN.model).is_file()
    assert not load_model(tmp_path / TRAIN.first_pass / TRAIN.model)[1].pseudo_labels
    assert load_model(result.checkpoint)[1].pseudo_labels
    assert "pseudo-labels added" in caplog.text and "Second pass" in caplog.text


def test_a_complete_annotation_trains_once(tiny_dataset, tmp_path):
    tomograms, coordinates, diameter = _inputs(tiny_dataset)
    train(tomograms, coordinates, _config("tomopicker", diameter, epochs=1, pseudo_labels=True), tmp_path)
    assert not (tmp_path / TRAIN.first_pass).exists()
