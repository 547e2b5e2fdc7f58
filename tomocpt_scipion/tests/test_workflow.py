"""The plugin's chain in a real Scipion project: import → train → pick on held-out tomograms →
evaluate, on simulated tomograms (CPU, about 2 minutes). Run with `scipion3 tests
tomocpt_scipion.tests.test_workflow` or pytest.

Tiny settings (see tomocpt_scipion.demo): five simulated 96 × 96 × 48 tomograms at 20 Å/px,
SNR 1; three for training (one of them validates) with 80 % of their ribosomes annotated, two
held out for picking and evaluation against all their ribosomes.
"""

import os

import numpy as np
import pandas as pd
from pyworkflow.object import Pointer
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import SetOfCoordinates3D
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

from tomocpt_scipion.demo import run_demo_workflow
from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.outputs import PREDICT
from tomocpt_scipion.objects import TomoCPTModel
from tomocpt_scipion.viewers import TomoCPTEvaluateViewer, TomoCPTPickViewer, TomoCPTTrainViewer

PIXEL_SIZE_A = 20.0
# 20 epochs of the small ResUNet on partly annotated tomograms: the engine's end-to-end test
# (full annotation, 25 epochs) reaches 0.89; here F1 must be far above what random picks at
# this density give (< 0.15).
F1_BOUND = 0.6


class TomoCPTProjectTest(BaseTest):
    """Helpers shared by the Scipion tests."""

    @classmethod
    def importTomograms(cls, folder, samplingRate=PIXEL_SIZE_A, **extra):
        return cls.launchProtocol(
            cls.newProtocol(
                ProtImportTomograms, filesPath=folder, filesPattern="*.mrc", samplingRate=samplingRate, **extra
            )
        ).Tomograms

    @classmethod
    def importCoordinates(cls, folder, tomograms, boxSize=20, samplingRate=PIXEL_SIZE_A, label=None):
        """The import protocol (its output is ``outputCoordinates``)."""
        protocol = cls.newProtocol(
            ProtImportCoordinates3D,
            importFrom=0,
            filesPath=folder,
            filesPattern="*.txt",
            importTomograms=tomograms,
            boxSize=boxSize,
            samplingRate=samplingRate,
        )
        if label:
            protocol.setObjLabel(label)
        return cls.launchProtocol(protocol)

    @staticmethod
    def addCoordinates(protocol, importProtocol):
        protocol.inputCoordinates.append(Pointer(importProtocol, extended="outputCoordinates"))


class TestTrainPickEvaluate(TomoCPTProjectTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        steps = run_demo_workflow(cls.proj, cls.getOutputPath("simulated"))
        cls.diameter = cls.proj.getProtocol(steps["train"].getObjId()).diameter.get()
        cls.trainTomograms = steps["import train tomograms"].Tomograms
        cls.testTomograms = steps["import test tomograms"].Tomograms
        cls.annotate = steps["import train coordinates"]
        cls.annotations = cls.annotate.outputCoordinates
        cls.reference = steps["import test coordinates"].outputCoordinates
        cls.train, cls.pick, cls.evaluate = steps["train"], steps["pick"], steps["evaluate"]

    def test_training_outputs_a_model_with_provenance(self):
        model = self.train.model
        self.assertIsInstance(model, TomoCPTModel)
        self.assertTrue(os.path.exists(model.getCheckpoint()))
        self.assertFalse(os.path.isabs(model.getCheckpoint()), "checkpoint path must be project-relative")
        self.assertEqual(
            (model.getBackbone(), model.getLabelType(), model.getClasses()), ("resunet", "tball", ["ribosome"])
        )
        self.assertAlmostEqual(model.getDiameter(), self.diameter, places=3)
        self.assertAlmostEqual(model.getTrainingSamplingRate(), self.diameter / 10, places=3)
        self.assertEqual(model.getFiles(), {model.getCheckpoint()})
        parents = {p.getObjId() for p in self.proj.getSourceParents(model)}
        self.assertIn(self.trainTomograms.getObjId(), parents)
        # a relation through a pointer with an extension is stored on the producing protocol
        self.assertTrue({self.annotations.getObjId(), self.annotate.getObjId()} & parents)
        self.assertTrue(os.path.exists(self.train.getLearningCurvePath()))

    def test_picks_carry_everything_relion_and_dynamo_extraction_read(self):
        picks = self.pick.coordinates
        self.assertIsInstance(picks, SetOfCoordinates3D)
        self.assertGreater(picks.getSize(), 10)
        self.assertEqual(picks.getSamplingRate(), self.testTomograms.getSamplingRate())
        self.assertEqual(picks.getBoxSize(), int(2 * np.ceil(1.2 * self.diameter / PIXEL_SIZE_A / 2)))
        self.assertEqual(picks.getPrecedents().getObjId(), self.testTomograms.getObjId())
        self.assertTrue(picks.isStreamClosed())
        tomograms = {t.getTsId(): t for t in self.testTomograms}
        for coordinate in picks.iterCoordinates():
            tomo = coordinate.getVolume()
            self.assertEqual(coordinate.getTomoId(), tomo.getTsId())
            self.assertIn(coordinate.getTomoId(), tomograms)
            position = np.array(coordinate.getPosition(BOTTOM_LEFT_CORNER))
            self.assertTrue(np.all(position >= -0.5) and np.all(position <= np.array(tomo.getDimensions()) - 0.5))
            self.assertTrue(0 <= coordinate.getScore() <= 1)
            self.assertEqual(coordinate.getGroupId(), 1)
            np.testing.assert_array_equal(coordinate.getMatrix(), np.eye(4))
        parents = {p.getObjId() for p in self.proj.getSourceParents(picks)}
        self.assertIn(self.testTomograms.getObjId(), parents)
        self.assertIn(self.train.model.getObjId(), parents)

    def test_relion5_relion4_and_dynamo_input_writers_take_the_picks_as_they_are(self):
        """Run the input-side conversion of RELION 5 extraction, RELION 4 prepare-data and Dynamo
        extraction on the picks; every position they write is the engine's pixel position."""
        try:
            from dynamo.convert.convert import matrix2eulerAngles
            from reliontomo.constants import IN_PARTICLES_STAR
            from reliontomo.convert import writeSetOfCoordinates
            from reliontomo.convert.convert50_tomo import Writer as Relion5Writer
        except ImportError as missing:  # the [test] extra installs them; a plain Scipion may lack them
            self.skipTest(f"needs scipion-em-reliontomo and scipion-em-dynamo ({missing})")
        import starfile

        picks = self.pick.coordinates
        engine = pd.concat(
            [
                io.read_coordinates(self.pick._getExtraPath("picks", t.getTsId(), PREDICT.table))
                for t in self.testTomograms
            ]
        ).sort_values(["tomo_name", "x", "y"])
        tomoDict = {t.getTsId(): t.clone() for t in self.testTomograms}
        out = self.getOutputPath("relion5_input")
        os.makedirs(out, exist_ok=True)
        Relion5Writer.coords2Star(picks, tomoDict, out)
        relion5 = next(iter(starfile.read(os.path.join(out, IN_PARTICLES_STAR), always_dict=True).values()))
        relion4_file = self.getOutputPath("relion4_particles.star")
        writeSetOfCoordinates(picks, relion4_file, list(tomoDict), sRate=picks.getSamplingRate())
        relion4 = next(iter(starfile.read(relion4_file, always_dict=True).values()))
        for written in (relion5, relion4):
            written = written.sort_values(["rlnTomoName", "rlnCoordinateX", "rlnCoordinateY"])
            self.assertEqual(list(written["rlnTomoName"]), list(engine["tomo_name"]))
            np.testing.assert_allclose(
                written[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(),
                engine[["x", "y", "z"]].to_numpy(),
                atol=2e-3,
            )
        for coordinate in picks.iterCoordinates():  # what Dynamo's extraction reads, as it reads it
            self.assertEqual(tuple(matrix2eulerAngles(coordinate.getMatrix())[:3]), (0, 0, 0))
            self.assertTrue(os.path.exists(os.path.abspath(tomoDict[coordinate.getTomoId()].getFileName())))

    def test_evaluation_finds_the_simulated_particles(self):
        self.assertGreaterEqual(self.evaluate.f1.get(), F1_BOUND, self.evaluate.summary())
        rows = self.evaluate.getPerTomogramMetrics()
        self.assertEqual([r["tomo_name"] for r in rows][-1], "all")
        self.assertEqual(len(rows), self.testTomograms.getSize() + 1)
        kept = self.evaluate.coordinates
        self.assertEqual(
            kept.getSize(),
            sum(
                1 for c in self.pick.coordinates.iterCoordinates() if c.getScore() >= self.evaluate.bestThreshold.get()
            ),
        )
        self.assertIn("F1", self.evaluate.summary()[0])

    def test_viewers_show_the_files_the_protocols_wrote(self):
        for viewer, protocol in ((TomoCPTTrainViewer, self.train), (TomoCPTPickViewer, self.pick)):
            views = viewer(project=self.proj, protocol=protocol)._visualize(protocol)
            self.assertTrue(views and all(os.path.exists(v.path) for v in views))
        rows = TomoCPTEvaluateViewer(project=self.proj, protocol=self.evaluate).getTableRows(self.evaluate)
        self.assertEqual(rows[-1][0], "all")
