"""The headless Scipion harness: offline projects, real import protocols, plugin discovery."""

import numpy as np
import pwem
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.simulate import SimulationConfig, simulate_dataset

PIXEL_SIZE_A = 20.0


class TestHeadlessScipionImportsSimulatedData(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.data = cls.getOutputPath("simulated")
        cls.summary = simulate_dataset(
            cls.data,
            n_tomograms=2,
            seed=3,
            config=SimulationConfig(
                shape_zyx=(24, 48, 48), pixel_size_a=PIXEL_SIZE_A, n_target=5, n_distractors=4, mode="fourier"
            ),
        )

    def test_plugin_is_discovered_by_scipion(self):
        self.assertIn("tomocpt_scipion", pwem.Domain.getPlugins())

    def test_import_tomograms_and_coordinates_keeps_every_position(self):
        tomograms = self.launchProtocol(
            self.newProtocol(
                ProtImportTomograms, filesPath=f"{self.data}/tomograms", filesPattern="*.mrc", samplingRate=PIXEL_SIZE_A
            )
        ).Tomograms
        self.assertEqual(tomograms.getSize(), 2)
        coordinates = self.launchProtocol(
            self.newProtocol(
                ProtImportCoordinates3D,
                importFrom=0,
                filesPath=f"{self.data}/coordinates/4v94",
                filesPattern="*.txt",
                importTomograms=tomograms,
                boxSize=16,
                samplingRate=PIXEL_SIZE_A,
            )
        ).outputCoordinates
        expected = io.read_coordinates(f"{self.data}/coordinates/4v94.star")
        self.assertEqual(coordinates.getSize(), len(expected))
        by_tomogram = {}
        for coordinate in coordinates.iterCoordinates():
            by_tomogram.setdefault(coordinate.getTomoId(), []).append(coordinate.getPosition(BOTTOM_LEFT_CORNER))
        for name, positions in by_tomogram.items():
            truth = expected[expected.tomo_name == name][["x", "y", "z"]].to_numpy()
            # Scipion's text import reads 4 decimals; our writer keeps 4
            np.testing.assert_allclose(sorted(map(tuple, positions)), sorted(map(tuple, truth)), atol=1e-3)


def test_several_gpus_launch_the_engine_under_torchrun_one_process_each():
    from tomocpt_scipion import Plugin

    single = Plugin.getEngineCommand(gpus=True)
    several = Plugin.getEngineCommand(gpus=True, processes=4)
    assert single.startswith("CUDA_VISIBLE_DEVICES=%(GPU)s") and "torch.distributed.run" not in single
    assert "-m torch.distributed.run --standalone --nproc_per_node 4 -m tomocpt_scipion.engine" in several
    assert Plugin.getEngineCommand(gpus=False).startswith("CUDA_VISIBLE_DEVICES=''")
