"""Small simulated datasets shared by the engine tests (seconds to make on 2 cores)."""

import pytest

from tomocpt_scipion.engine.simulate import SimulationConfig, simulate_dataset

TINY = SimulationConfig(
    shape_zyx=(32, 64, 64), pixel_size_a=20.0, n_target=12, n_distractors=8, mode="fourier", snr=1.0, n_gold=1
)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Two tiny tomograms (32 x 64 x 64 voxels at 20 Å/px) with their ground truth."""
    out = tmp_path_factory.mktemp("tiny_dataset")
    summary = simulate_dataset(out, n_tomograms=2, config=TINY, seed=11)
    return out, summary
