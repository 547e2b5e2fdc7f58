"""The demo workflow in a Scipion project: simulate → import → train → pick → evaluate.

Used by ``make demo`` (``python -m tomocpt_scipion.demo``) and by the workflow test. The
simulated tomograms are split into training ones, of which a fraction of the ribosomes is
"annotated" as a user would, and held-out ones, picked and evaluated against all their
ribosomes.
"""

import argparse
import os
import shutil
import sys

import numpy as np
from pyworkflow.object import Pointer
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

from .engine import io
from .engine.simulate import SimulationConfig, simulate_dataset
from .protocols import ProtTomoCPTEvaluate, ProtTomoCPTPick, ProtTomoCPTTrain
from .protocols.protocol_train import RECIPES

TARGET = "4v94"
DEMO_SIMULATION = dict(
    shape_zyx=(48, 96, 96), pixel_size_a=20.0, n_target=20, n_distractors=12, mode="fourier", snr=1.0
)
DEMO_TRAINING = dict(
    recipe=RECIPES.index("deepetpicker"),
    modelSize=1,
    patchSize=32,
    epochs=20,
    batchSize=4,  # DeepETPicker, small
    centringSteps=200,
)


def _split(root, summary, n_train, annotated_fraction, seed):
    """Copy tomograms into train/ and test/ folders with their (partial, for train) annotations."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(summary["tomograms"]):
        kind = "train" if index < n_train else "test"
        for sub in ("tomograms", "annotations"):
            os.makedirs(os.path.join(root, kind, sub), exist_ok=True)
        shutil.copy(os.path.join(root, "tomograms", f"{name}.mrc"), os.path.join(root, kind, "tomograms"))
        truth = io.read_coordinates(os.path.join(root, "coordinates", TARGET, f"{name}.txt"))
        if kind == "train":
            keep = np.sort(rng.choice(len(truth), int(round(annotated_fraction * len(truth))), replace=False))
            truth = truth.iloc[keep]
        io.write_coordinates(os.path.join(root, kind, "annotations", f"{name}.txt"), truth, overwrite=True)


def _launch(project, protocolClass, label, coordinates=None, **kwargs):
    protocol = project.newProtocol(protocolClass, **kwargs)
    if coordinates is not None:
        protocol.inputCoordinates.append(Pointer(coordinates, extended="outputCoordinates"))
    protocol.setObjLabel(label)
    project.launchProtocol(protocol, wait=True)
    if not protocol.isFinished():
        raise RuntimeError(f"protocol '{label}' {protocol.getStatus()}: see {protocol.getLogPaths()[0]}")
    return protocol


def run_demo_workflow(
    project, folder, n_train=3, n_test=2, annotated_fraction=0.8, seed=5, simulation=None, training=None
):
    """Run the whole chain in ``project``; returns the protocols by step name.

    Parameters
    ----------
    project : an open pyworkflow Project.
    folder : where the simulated data go.
    n_train, n_test : training and held-out tomograms.
    annotated_fraction : fraction of the training ribosomes given as annotations.
    seed : simulation seed.
    simulation, training : overrides of DEMO_SIMULATION / DEMO_TRAINING.
    """
    config = SimulationConfig(**{**DEMO_SIMULATION, **(simulation or {})})
    summary = simulate_dataset(folder, n_train + n_test, config, seed=seed, overwrite=True)
    diameter = summary["diameters_a"][TARGET]
    _split(folder, summary, n_train, annotated_fraction, seed)
    steps = {}
    for kind in ("train", "test"):
        steps[f"import {kind} tomograms"] = _launch(
            project,
            ProtImportTomograms,
            f"{kind} tomograms",
            filesPath=os.path.join(folder, kind, "tomograms"),
            filesPattern="*.mrc",
            samplingRate=config.pixel_size_a,
        )
        steps[f"import {kind} coordinates"] = _launch(
            project,
            ProtImportCoordinates3D,
            "ribosome" if kind == "train" else "all ribosomes (truth)",
            importFrom=0,
            filesPath=os.path.join(folder, kind, "annotations"),
            filesPattern="*.txt",
            importTomograms=steps[f"import {kind} tomograms"].Tomograms,
            boxSize=int(np.ceil(diameter / config.pixel_size_a)),
            samplingRate=config.pixel_size_a,
        )
    steps["train"] = _launch(
        project,
        ProtTomoCPTTrain,
        "train picker",
        steps["import train coordinates"],
        inputTomograms=steps["import train tomograms"].Tomograms,
        diameter=diameter,
        **{**DEMO_TRAINING, **(training or {})},
    )
    steps["pick"] = _launch(
        project,
        ProtTomoCPTPick,
        "pick particles",
        inputTomograms=steps["import test tomograms"].Tomograms,
        inputModel=steps["train"].model,
    )
    steps["evaluate"] = _launch(
        project,
        ProtTomoCPTEvaluate,
        "evaluate picks",
        inputPicks=steps["pick"].coordinates,
        inputReference=steps["import test coordinates"].outputCoordinates,
    )
    return steps


def main(argv=None):
    """``python -m tomocpt_scipion.demo``: build the demo project and print what happened."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="tomocpt_demo", help="project name (replaced if it exists)")
    args = parser.parse_args(argv)
    from pyworkflow.project import Manager

    manager = Manager()
    if manager.hasProject(args.project):
        manager.deleteProject(args.project)
    project = manager.createProject(args.project)
    os.chdir(project.getPath())  # pyworkflow resolves the project's files from its folder
    steps = run_demo_workflow(project, os.path.abspath("simulated"))
    print(f"\nScipion project '{args.project}' in {project.getPath()}")
    for protocol in project.getRuns():
        print(f"  {protocol.getObjId():>5}  {protocol.getStatus():<10} {protocol.getObjLabel()}")
    print("\nEvaluation of the picks on the held-out tomograms:")
    print("  " + "\n  ".join(steps["evaluate"].summary()))
    print(f"\nOpen it with: scipion3 project {args.project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
