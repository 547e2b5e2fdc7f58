"""Scipion projects beyond the demo chain (which is tomocpt_scipion/tests/test_workflow.py): coordinate
round trips, picking continue mode and validation, filters, the browser, forms, imports.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from pyworkflow.tests import setupTestProject
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import SetOfCoordinates3D

from tomocpt_scipion import protocols
from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.simulate import SimulationConfig, simulate_dataset
from tomocpt_scipion.protocols import ProtTomoCPTImportModel, ProtTomoCPTPick, ProtTomoCPTTrain
from tomocpt_scipion.tests.test_workflow import PIXEL_SIZE_A, TomoCPTProjectTest

ALL_PROTOCOLS = [getattr(protocols, name) for name in protocols.__all__]


def simulate(folder, seed, n_tomograms=4, **config):
    config = SimulationConfig(
        **{
            **dict(
                shape_zyx=(48, 96, 96),
                pixel_size_a=PIXEL_SIZE_A,
                n_target=20,
                n_distractors=12,
                mode="fourier",
                snr=1.0,
            ),
            **config,
        }
    )
    summary = simulate_dataset(folder, n_tomograms, config, seed=seed)
    return summary


ARTEFACTS = Path(os.environ.get("TOMOCPT_TEST_ARTEFACTS", Path(__file__).parents[2] / "test-artefacts"))


class TestCoordinateRoundTrip(TomoCPTProjectTest):
    """Engine pixels → Scipion set → getPosition(BOTTOM_LEFT_CORNER) → the same pixels."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.root = cls.getOutputPath("odd")
        simulate(cls.root, seed=2, n_tomograms=2, shape_zyx=(31, 47, 53), n_target=6, n_distractors=2)

    def _roundTrip(self, tomograms):
        from tomocpt_scipion.convert import coordinatesTable, fillCoordinates

        truth = io.read_coordinates(os.path.join(self.root, "coordinates", "4v94.star"))
        coordinates = SetOfCoordinates3D(filename=self.getOutputPath(f"coords_{tomograms.getObjId()}.sqlite"))
        coordinates.setPrecedents(tomograms)
        coordinates.setSamplingRate(tomograms.getSamplingRate())
        fillCoordinates(coordinates, truth, {t.getTsId(): t.clone() for t in tomograms})
        back = coordinatesTable(coordinates, tomograms)
        np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), truth[["x", "y", "z"]].to_numpy(), atol=1e-4)
        self.assertEqual(list(back["tomo_name"]), list(truth["tomo_name"]))

    def test_odd_sized_tomograms_with_the_default_origin(self):
        self._roundTrip(self.importTomograms(os.path.join(self.root, "tomograms")))

    def test_tomograms_with_a_non_default_origin(self):
        self._roundTrip(
            self.importTomograms(os.path.join(self.root, "tomograms"), setOrigCoord=True, x=13.0, y=-7.5, z=21.0)
        )

    def test_coordinates_imported_at_another_sampling_rate(self):
        from tomocpt_scipion.convert import coordinatesTable

        tomograms = self.importTomograms(os.path.join(self.root, "tomograms"))
        binned = os.path.join(self.root, "binned")
        truth = io.read_coordinates(os.path.join(self.root, "coordinates", "4v94.star"))
        for name in truth["tomo_name"].unique():
            part = truth[truth["tomo_name"] == name]
            io.write_coordinates(
                os.path.join(binned, f"{name}.txt"), part.assign(x=part.x / 2, y=part.y / 2, z=part.z / 2)
            )
        coordinates = self.importCoordinates(binned, tomograms, samplingRate=2 * PIXEL_SIZE_A).outputCoordinates
        back = coordinatesTable(coordinates, tomograms).sort_values(["tomo_name", "x"])
        expected = truth.sort_values(["tomo_name", "x"])
        np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), expected[["x", "y", "z"]].to_numpy(), atol=2e-3)

    def test_import_protocol_reads_warp_and_dynamo_files_with_scores_and_classes(self):
        from tomocpt_scipion.convert import coordinatesTable
        from tomocpt_scipion.protocols import ProtTomoCPTImportCoordinates

        tomograms = self.importTomograms(os.path.join(self.root, "tomograms"))
        truth = io.read_coordinates(os.path.join(self.root, "coordinates", "4v94.star"))
        truth = truth.assign(score=np.linspace(0.1, 0.9, len(truth)), class_id=1 + np.arange(len(truth)) % 2)
        names = sorted(truth["tomo_name"].unique())
        for fmt, path in (("warp", "picks_warp.star"), (None, "picks.tbl")):
            path = io.write_coordinates(
                self.getOutputPath(path), truth, fmt, pixel_size_a=PIXEL_SIZE_A, tomo_names=names, overwrite=True
            )
            protocol = self.launchProtocol(
                self.newProtocol(
                    ProtTomoCPTImportCoordinates,
                    inputTomograms=tomograms,
                    coordinatesFile=str(path),
                    fileFormat=ProtTomoCPTImportCoordinates.FORMAT_CHOICES.index(fmt) if fmt else 0,
                    boxSize=24,
                )
            )
            back = coordinatesTable(protocol.coordinates, tomograms).sort_values(["tomo_name", "x"])
            expected = truth.sort_values(["tomo_name", "x"])
            np.testing.assert_allclose(
                back[["x", "y", "z"]].to_numpy(), expected[["x", "y", "z"]].to_numpy(), atol=0.01
            )
            np.testing.assert_allclose(back["score"], expected["score"], atol=1e-4)
            np.testing.assert_array_equal(back["class_id"], expected["class_id"])
            self.assertEqual(protocol.coordinates.getBoxSize(), 24)

    def test_import_protocol_reads_the_picks_of_a_copick_project(self):
        import json

        from tomocpt_scipion.convert import coordinatesTable
        from tomocpt_scipion.engine import copick_project
        from tomocpt_scipion.protocols import ProtTomoCPTImportCoordinates

        tomograms = self.importTomograms(os.path.join(self.root, "tomograms"))
        truth = io.read_coordinates(os.path.join(self.root, "coordinates", "4v94.star"))
        truth = truth.assign(score=np.linspace(0.2, 0.8, len(truth)))
        config = Path(self.getOutputPath("copick", "config.json"))
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            json.dumps(
                {
                    "config_type": "filesystem",
                    "overlay_root": f"local://{config.parent / 'overlay'}",
                    "overlay_fs_args": {"auto_mkdir": True},
                    "pickable_objects": [{"name": "ribosome", "is_particle": True, "label": 1}],
                }
            )
        )
        copick_project.write_picks(config, truth, PIXEL_SIZE_A, ["ribosome"])
        protocol = self.launchProtocol(
            self.newProtocol(
                ProtTomoCPTImportCoordinates,
                inputTomograms=tomograms,
                coordinatesFile=str(config),
                fileFormat=ProtTomoCPTImportCoordinates.COPICK,
                copickObjects="ribosome",
            )
        )
        back = coordinatesTable(protocol.coordinates, tomograms).sort_values(["tomo_name", "x"])
        expected = truth.sort_values(["tomo_name", "x"])
        np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), expected[["x", "y", "z"]].to_numpy(), atol=0.01)
        np.testing.assert_allclose(back["score"], expected["score"], atol=1e-4)


class TestPickContinueAndValidation(TomoCPTProjectTest):
    @pytest.fixture(autouse=True)
    def _pytestFixtures(self, request):
        """pytest's fixture lookup, for the tests that need a session fixture (the engine environment)."""
        self.fixtures = request

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        from tomocpt_scipion.engine.config import recipe_config
        from tomocpt_scipion.engine.train import train

        cls.root = cls.getOutputPath("data")
        summary = simulate(cls.root, seed=8, n_tomograms=2, n_target=8, n_distractors=4)
        cls.diameter = summary["diameters_a"]["4v94"]
        tomograms = [os.path.join(cls.root, p) for p in summary["tomograms"].values()]
        config = recipe_config(
            "deepetpicker",
            diameter_a=cls.diameter,
            model_size="small",
            patch_size=32,
            epochs=1,
            batch_size=4,
            centring_steps=0,
        )
        train(
            tomograms,
            io.read_coordinates(os.path.join(cls.root, "coordinates", "4v94.star")),
            config,
            os.path.join(cls.root, "model"),
        )
        cls.model = cls.launchProtocol(
            cls.newProtocol(ProtTomoCPTImportModel, checkpointFile=os.path.join(cls.root, "model", "model.pt"))
        ).model
        cls.tomograms = cls.importTomograms(os.path.join(cls.root, "tomograms"))

    def test_imported_model_is_copied_into_the_project(self):
        self.assertTrue(self.model.getCheckpoint().startswith("Runs/"))
        self.assertEqual(self.model.getBackbone(), "resunet")

    def test_continue_mode_reruns_only_the_tomogram_whose_step_failed(self):
        from pyworkflow.protocol.constants import MODE_RESUME

        second = os.path.join(self.root, "tomograms", "tomo_001.mrc")
        backup = second + ".bak"
        shutil.copy(second, backup)
        with open(second, "r+b") as handle:
            handle.truncate(2048)  # the engine will refuse it: a truncated MRC
        pick = self.newProtocol(ProtTomoCPTPick, inputTomograms=self.tomograms, inputModel=self.model)
        with self.assertRaises(Exception):  # noqa: B017 - pyworkflow reports a failed run as a bare Exception
            self.launchProtocol(pick)
        first_picks = pick._getExtraPath("picks", "tomo_000", "picks.csv")
        self.assertTrue(os.path.exists(first_picks))
        self.assertFalse(os.path.exists(pick._getExtraPath("picks", "tomo_001", "picks.csv")))
        first_time = os.path.getmtime(first_picks)
        shutil.move(backup, second)
        pick.runMode.set(MODE_RESUME)
        self.launchProtocol(pick)
        self.assertEqual(os.path.getmtime(first_picks), first_time, "the finished tomogram was picked again")
        self.assertTrue(os.path.exists(pick._getExtraPath("picks", "tomo_001", "picks.csv")))
        self.assertTrue(pick.coordinates.getSize() >= 0)

    def test_pick_form_without_tomograms_is_refused(self):
        errors = self.newProtocol(ProtTomoCPTPick, inputModel=self.model).validate()
        self.assertTrue(any("no tomograms" in e for e in errors), errors)

    def test_pick_form_for_another_particle_size_needs_rescaling(self):
        protocol = self.newProtocol(
            ProtTomoCPTPick, inputTomograms=self.tomograms, inputModel=self.model, diameter=2 * self.diameter
        )
        self.assertTrue(any("was trained for particles of" in e for e in protocol.validate()))
        protocol.rescaleToModel.set(True)
        self.assertFalse(protocol.validate())

    def test_pick_form_with_a_mask_of_another_shape_is_refused(self):
        from tomo.objects import SetOfTomoMasks, TomoMask

        # Scipion's mask import refuses such masks, so the set is built directly
        maskSet = SetOfTomoMasks.create(self.getOutputPath(), template="masks%s.sqlite")
        maskSet.setSamplingRate(PIXEL_SIZE_A)
        for tomo in self.tomograms:
            path = io.write_mrc(
                self.getOutputPath(f"{tomo.getTsId()}_mask.mrc"),
                np.ones((10, 20, 30), np.int8),
                PIXEL_SIZE_A,
                overwrite=True,
            )
            mask = TomoMask(location=str(path))
            mask.setSamplingRate(PIXEL_SIZE_A)
            mask.setTsId(tomo.getTsId())
            maskSet.append(mask)
        protocol = self.newProtocol(
            ProtTomoCPTPick, inputTomograms=self.tomograms, inputModel=self.model, inputMasks=maskSet
        )
        self.assertTrue(any("does not have the shape of its tomogram" in e for e in protocol.validate()))

    def test_train_form_for_pu_learning_without_expected_count_is_refused(self):
        annotate = self.importCoordinates(os.path.join(self.root, "coordinates", "4v94"), self.tomograms)
        protocol = self.newProtocol(ProtTomoCPTTrain, inputTomograms=self.tomograms, diameter=self.diameter, recipe=2)
        self.addCoordinates(protocol, annotate)
        self.assertTrue(any("expected number of particles" in e for e in protocol.validate()))

    def test_train_form_warns_where_a_partial_annotation_holds_too_few_particles(self):
        annotate = self.importCoordinates(os.path.join(self.root, "coordinates", "4v94"), self.tomograms)
        labelled = len(io.read_coordinates(os.path.join(self.root, "coordinates", "4v94.star")))
        tomograms = self.tomograms.getSize()
        perTomogram = labelled // tomograms
        protocol = self.newProtocol(
            ProtTomoCPTTrain,
            inputTomograms=self.tomograms,
            diameter=self.diameter,
            recipe=2,
            expectedParticles=10 * perTomogram,
        )
        self.addCoordinates(protocol, annotate)
        few = [w for w in protocol.warnings() if "labelled particle(s)" in w]
        self.assertEqual(len(few), 1, protocol.warnings())
        self.assertIn(f": {labelled} labelled particle(s) in {tomograms} training tomogram(s)", few[0])
        protocol.expectedParticles.set(perTomogram)  # the annotation is complete: no warning
        self.assertFalse([w for w in protocol.warnings() if "labelled particle(s)" in w])

    def test_train_form_starts_from_the_engines_default_recipe(self):
        from tomocpt_scipion.engine.specs import DEFAULT_RECIPE
        from tomocpt_scipion.protocols.protocol_train import RECIPES

        self.assertEqual(RECIPES[self.newProtocol(ProtTomoCPTTrain).recipe.get()], DEFAULT_RECIPE)

    def test_train_form_leaves_the_particle_template_to_the_recipe_unless_asked(self):
        from tomocpt_scipion.protocols.protocol_train import PARTICLE_TEMPLATE

        annotate = self.importCoordinates(os.path.join(self.root, "coordinates", "4v94"), self.tomograms)
        protocol = self.newProtocol(ProtTomoCPTTrain, inputTomograms=self.tomograms, diameter=self.diameter)
        self.addCoordinates(protocol, annotate)
        flags = {"--particle-template", "--no-particle-template"}
        self.assertFalse(flags & set(protocol._getTrainArgs()))
        for choice, flag in (("yes", "--particle-template"), ("no", "--no-particle-template")):
            protocol.particleTemplate.set(PARTICLE_TEMPLATE.index(choice))
            self.assertEqual(flags & set(protocol._getTrainArgs()), {flag})

    def test_train_form_help_names_each_recipes_particle_template_default_from_the_specs(self):
        from tomocpt_scipion.engine.specs import RECIPE_SPECS

        help = ProtTomoCPTTrain().getParam("particleTemplate").help.get()
        said = {"yes": help.split("yes for ")[1].split(";")[0], "no": help.split("no for ")[1].split(".")[0]}
        for spec in RECIPE_SPECS.values():
            self.assertIn(spec.picker, said["yes" if spec.particle_template else "no"], help)

    def test_every_protocol_with_an_empty_form_answers_with_messages(self):
        for protocolClass in ALL_PROTOCOLS:
            protocol = self.newProtocol(protocolClass)
            errors = protocol.validate()
            self.assertTrue(errors and all(isinstance(e, str) for e in errors), (protocolClass.__name__, errors))
            protocol.summary(), protocol.warnings()  # the GUI shows these for an unsaved form too

    def test_train_form_without_a_diameter_says_so_instead_of_failing(self):
        annotate = self.importCoordinates(os.path.join(self.root, "coordinates", "4v94"), self.tomograms)
        protocol = self.newProtocol(ProtTomoCPTTrain, inputTomograms=self.tomograms)
        self.addCoordinates(protocol, annotate)
        errors = protocol.validate()
        self.assertIn("*Particle diameter (Å)* needs a value.", errors)

    def test_forms_refuse_values_out_of_range_by_label(self):
        from tomocpt_scipion.protocols import ProtTomoCPTEvaluate

        pick = self.newProtocol(
            ProtTomoCPTPick,
            inputTomograms=self.tomograms,
            inputModel=self.model,
            useModelThreshold=False,
            threshold=1.5,
            minDistance=-5.0,
            batchSize=0,
        )
        errors = pick.validate()
        for expected in (
            "*Score threshold* 1.5 is out of range: it must be ≥ 0 and ≤ 1.",
            "*Minimum distance (Å)* -5 is out of range: it must be ≥ 0.",
            "*Patches per batch* 0 is out of range: it must be ≥ 1.",
        ):
            self.assertIn(expected, errors)
        annotate = self.importCoordinates(os.path.join(self.root, "coordinates", "4v94"), self.tomograms)
        train = self.newProtocol(ProtTomoCPTTrain, inputTomograms=self.tomograms, diameter=1e4)
        self.addCoordinates(train, annotate)
        self.assertTrue(
            any("tomo_000: a particle of 10000 Å is 500 px" in e for e in train.validate()), train.validate()
        )
        evaluate = self.newProtocol(
            ProtTomoCPTEvaluate,
            inputPicks=annotate.outputCoordinates,
            inputReference=annotate.outputCoordinates,
            diameter=1e4,
        )
        self.assertTrue(any("wider than the tomogram's smallest side" in e for e in evaluate.validate()))

    def test_every_form_parameter_has_help(self):
        for protocolClass in ALL_PROTOCOLS:
            missing = [
                name
                for name, param in self.newProtocol(protocolClass).getDefinition().iterParams()
                if not name.startswith(
                    ("runName", "runMode", "hostName", "numberOf", "useQueue", "queueParams", "comment", "_useQueue")
                )
                and not (param.help.get() or "").strip()
            ]
            self.assertFalse(missing, f"{protocolClass.__name__}: {missing}")

    def test_the_forms_offer_exactly_what_the_engine_implements(self):
        from tomocpt_scipion.engine.config import RECIPES
        from tomocpt_scipion.engine.labels import LABELS
        from tomocpt_scipion.engine.losses import LOSSES
        from tomocpt_scipion.engine.metrics import CRITERIA
        from tomocpt_scipion.engine.models import MODELS
        from tomocpt_scipion.engine.specs import MERGE_MODES, PEAK_METHODS, REFINEMENTS
        from tomocpt_scipion.protocols import ProtTomoCPTEvaluate, protocol_evaluate, protocol_pick, protocol_train

        def choices(protocolClass, name):
            return list(self.newProtocol(protocolClass).getParam(name).choices)

        self.assertEqual(len(choices(ProtTomoCPTTrain, "recipe")), len(RECIPES))
        self.assertEqual(set(protocol_train.RECIPES), set(RECIPES))
        for name, engine, names in (
            ("backbone", MODELS, protocol_train.BACKBONES),
            ("labelType", LABELS, protocol_train.LABELS),
            ("loss", LOSSES, protocol_train.LOSSES),
        ):
            self.assertEqual(choices(ProtTomoCPTTrain, name), names)
            self.assertEqual(set(names[1:]), set(engine), name)  # the first is "recipe default"
        self.assertEqual(len(choices(ProtTomoCPTPick, "method")), len(PEAK_METHODS))
        self.assertEqual(choices(ProtTomoCPTPick, "refine"), list(REFINEMENTS))
        self.assertEqual(choices(ProtTomoCPTPick, "merge"), list(protocol_pick.MERGE_MODES))
        self.assertEqual(list(protocol_pick.MERGE_MODES), list(MERGE_MODES))
        self.assertEqual(len(choices(ProtTomoCPTEvaluate, "criterion")), len(CRITERIA))
        self.assertEqual(protocol_evaluate.CRITERIA, list(CRITERIA))

    def test_the_diameter_wizard_takes_the_particle_as_two_thirds_of_the_box(self):
        from tomocpt_scipion.wizards import diameterFromBox

        self.assertEqual(diameterFromBox(48, 10.0), 320.0)

    def test_pick_runs_through_the_engine_environment_that_installb_builds(self):
        from tomocpt_scipion import Plugin
        from tomocpt_scipion.constants import TOMOCPT_ENV_ACTIVATION

        environment = self.fixtures.getfixturevalue("engine_environment")
        activation = f". {environment / 'bin' / 'activate'}"
        # the protocol runs in a subprocess that reads the variable from the environment
        saved = os.environ.get(TOMOCPT_ENV_ACTIVATION)
        os.environ[TOMOCPT_ENV_ACTIVATION] = activation
        Plugin._vars[TOMOCPT_ENV_ACTIVATION] = activation
        try:
            pick = self.launchProtocol(
                self.newProtocol(ProtTomoCPTPick, inputTomograms=self.tomograms, inputModel=self.model, tta=False)
            )
        finally:
            Plugin._vars[TOMOCPT_ENV_ACTIVATION] = saved or ""
            if saved is None:
                del os.environ[TOMOCPT_ENV_ACTIVATION]
            else:
                os.environ[TOMOCPT_ENV_ACTIVATION] = saved
        self.assertGreater(pick.coordinates.getSize(), 0)
        with open(pick.getLogPaths()[0]) as log:
            engineCalls = [line for line in log if "tomocpt_scipion.engine" in line]
        self.assertTrue(engineCalls and all(activation in line for line in engineCalls), engineCalls)

    def test_pick_browser_shows_each_tomogram_and_keeps_its_threshold_as_a_filter_run(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from tomocpt_scipion.viewers import TomoCPTPickBrowser

        pick = self.launchProtocol(
            self.newProtocol(
                ProtTomoCPTPick,
                inputTomograms=self.tomograms,
                inputModel=self.model,
                useModelThreshold=False,
                threshold=0.05,
                tta=False,
            )
        )
        viewer = TomoCPTPickBrowser(project=self.proj, protocol=pick)
        views = viewer._visualize(pick)
        self.assertEqual(sorted(v.title for v in views), sorted(f"{t.getTsId()} (coordinates)" for t in self.tomograms))
        browser = views[0].build(plt.figure(figsize=(11, 7.5)))
        scores = browser.table["score"].to_numpy()
        threshold = float(np.round(np.median(scores), 3))
        browser.threshold_slider.set_val(threshold)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(ARTEFACTS / "scipion_pick_browser.png")
        plt.close(browser.figure)
        run = viewer.keepThreshold(pick, "coordinates", browser.threshold, wait=True)
        run = self.proj.getProtocol(run.getObjId())
        self.assertTrue(run.isFinished(), run.getStatusMessage())
        kept = sorted(round(c.getScore(), 4) for c in run.coordinates.iterCoordinates())
        self.assertEqual(
            kept,
            sorted(round(c.getScore(), 4) for c in pick.coordinates.iterCoordinates() if c.getScore() >= threshold),
        )
        self.assertTrue(0 < len(kept) < pick.coordinates.getSize())

    def test_picking_once_then_filtering_twice_runs_the_network_once(self):
        from tomocpt_scipion.protocols import ProtTomoCPTFilter

        pick = self.launchProtocol(
            self.newProtocol(
                ProtTomoCPTPick,
                inputTomograms=self.tomograms,
                inputModel=self.model,
                useModelThreshold=False,
                threshold=0.05,
                tta=False,
            )
        )
        candidates = [
            (c.getTomoId(), c.getScore(), c.getPosition(BOTTOM_LEFT_CORNER)) for c in pick.coordinates.iterCoordinates()
        ]
        self.assertGreater(len(candidates), 3)
        scores = np.array([score for _, score, _ in candidates])
        for threshold in np.round(np.quantile(scores, [0.5, 0.8]), 3):
            protocol = self.launchProtocol(
                self.newProtocol(ProtTomoCPTFilter, inputCoordinates=pick.coordinates, threshold=float(threshold))
            )
            kept = sorted(
                (c.getTomoId(), round(c.getScore(), 4), tuple(np.round(c.getPosition(BOTTOM_LEFT_CORNER), 2)))
                for c in protocol.coordinates.iterCoordinates()
            )
            self.assertTrue(0 < len(kept) < len(candidates))
            expected = sorted(
                (tsId, round(score, 4), tuple(np.round(position, 2)))
                for tsId, score, position in candidates
                if score >= threshold
            )
            self.assertEqual(kept, expected)
            with open(protocol.getLogPaths()[0]) as log:
                engineCalls = [line for line in log if "tomocpt_scipion.engine" in line]
            self.assertTrue(engineCalls and all('engine "filter"' in line for line in engineCalls), engineCalls)
