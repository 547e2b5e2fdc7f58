"""The option lists of ``specs`` (read by the command line and the Scipion forms) match what the engine implements."""

import argparse

import pytest

from tomocpt_scipion.engine import specs
from tomocpt_scipion.engine.cli import build_parser
from tomocpt_scipion.engine.config import RECIPES, recipe_config
from tomocpt_scipion.engine.labels import LABELS
from tomocpt_scipion.engine.losses import LOSSES
from tomocpt_scipion.engine.models import MODELS


def test_every_listed_option_is_implemented_and_every_implemented_one_listed():
    assert set(specs.BACKBONES) == set(MODELS)
    assert set(specs.LABELS) == set(LABELS)
    assert set(specs.LOSS_SPECS) == set(LOSSES)
    assert set(specs.RECIPE_SPECS) == set(RECIPES)


@pytest.mark.parametrize("recipe", list(specs.RECIPE_SPECS))
def test_each_recipe_config_is_built_around_its_spec(recipe):
    spec, config = specs.RECIPE_SPECS[recipe], recipe_config(recipe)
    assert (config.backbone, config.loss, config.particle_template) == (
        spec.backbone,
        spec.loss,
        spec.particle_template,
    )
    assert (
        recipe_config(recipe, particle_template=not spec.particle_template).particle_template != spec.particle_template
    )


def test_training_starts_from_a_recipe_that_picks_from_partial_annotations_too():
    """A user who labelled only some particles gets a positive-unlabelled recipe unless they choose otherwise."""
    args = build_parser().parse_args(
        ["train", "--tomograms", "t.mrc", "--coordinates", "c.star", "--diameter", "100", "--out", "m"]
    )
    assert args.recipe == specs.DEFAULT_RECIPE
    assert specs.RECIPE_SPECS[specs.DEFAULT_RECIPE].partial_labels


def _choices(command: str) -> dict[str, list]:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {
        action.dest: list(action.choices)
        for action in subparsers.choices[command]._actions
        if action.choices is not None
    }


def test_the_command_line_offers_exactly_the_listed_options():
    train, predict, evaluate = _choices("train"), _choices("predict"), _choices("evaluate")
    assert train["recipe"] == list(specs.RECIPE_SPECS)
    assert train["backbone"] == list(specs.BACKBONES)
    assert train["model_size"] == list(specs.MODEL_SIZES)
    assert train["label"] == list(specs.LABELS)
    assert train["loss"] == list(specs.LOSS_SPECS)
    assert predict["method"] == list(specs.PEAK_METHODS)
    assert predict["refine"] == list(specs.REFINEMENTS)
    assert predict["merge"] == list(specs.MERGE_MODES)
    assert evaluate["criterion"] == [c.name for c in specs.MATCH_CRITERIA]
    assert evaluate["sweep"] == [c.name for c in specs.SWEEP_GRIDS]


def test_every_command_prints_its_help():
    """Help texts built from the specs' sentences (a stray ``%`` breaks argparse's formatting)."""
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, parser in subparsers.choices.items():
        assert command in parser.format_help()
