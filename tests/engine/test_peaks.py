"""Peak extraction recovers planted peaks exactly: touching particles and particles at every face."""

import numpy as np
import pytest
from scipy import ndimage

from tomocpt_scipion.engine.config import EngineConfig
from tomocpt_scipion.engine.infer import ScoreMap
from tomocpt_scipion.engine.labels import gaussian
from tomocpt_scipion.engine.peaks import find_peaks, mp_nms_iterations
from tomocpt_scipion.engine.predict import picks_from_scores

SHAPE = (24, 60, 64)  # a thin tomogram: z is only 24 voxels
RADIUS = 5.0
PLANTED = np.array(
    [  # x, y, z
        [20, 30, 12],
        [30, 30, 12],  # two touching particles, one diameter apart
        [2, 45, 12],
        [61, 15, 12],  # within one radius of the x faces
        [45, 2, 10],
        [45, 57, 14],  # ... of the y faces
        [12, 12, 1],
        [52, 44, 22],  # ... of the z faces
    ],
    dtype=float,
)


@pytest.fixture(scope="module")
def score_map():
    heights = np.linspace(1.0, 0.6, len(PLANTED))
    scores = np.zeros(SHAPE, np.float32)
    for xyz, height in zip(PLANTED, heights):
        np.maximum(scores, height * gaussian(SHAPE, [xyz], RADIUS), out=scores)
    return scores


def _as_set(xyz):
    return sorted(map(tuple, np.rint(xyz).astype(int)))


@pytest.mark.parametrize("method", ["local-max", "mp-nms", "greedy"])
def test_each_method_recovers_every_planted_peak_exactly(score_map, method):
    peaks = find_peaks(score_map, method, radius_px=RADIUS, threshold=0.3, refine="none")
    assert _as_set(peaks[:, :3]) == _as_set(PLANTED)
    np.testing.assert_allclose(peaks[:, :3], np.rint(peaks[:, :3]))
    assert np.all(np.diff(peaks[:, 3]) <= 0), "best first"


@pytest.mark.parametrize("method", ["local-max", "mp-nms", "greedy"])
def test_max_picks_and_threshold_limit_the_picks(score_map, method):
    assert len(find_peaks(score_map, method, radius_px=RADIUS, threshold=0.3, max_picks=3)) == 3
    if method == "mp-nms":
        # the threshold segments; MP-NMS pools over what is left (small blobs here: radius 2),
        # and peaks barely above the threshold leave single-voxel specks, which are dropped
        peaks = find_peaks(score_map, method, radius_px=2.0, threshold=0.5)
        assert np.all(peaks[:, 3] >= 0.5) and 1 <= len(peaks) < len(PLANTED)
    else:
        peaks = find_peaks(score_map, method, radius_px=RADIUS, threshold=0.75)
        assert np.all(peaks[:, 3] >= 0.75) and len(peaks) == 5  # planted heights 1.0 ... 0.77


def test_mask_restricts_picks(score_map):
    mask = np.zeros(SHAPE, bool)
    mask[:, :, :32] = True
    peaks = find_peaks(score_map, "greedy", radius_px=RADIUS, mask=mask)
    assert _as_set(peaks[:, :3]) == _as_set(PLANTED[PLANTED[:, 0] < 32])


@pytest.mark.parametrize("refine", ["centroid", "quadratic"])
def test_subvoxel_refinement_finds_an_off_grid_centre(refine):
    true_xyz = np.array([20.3, 18.6, 11.8])
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), axis=-1)
    scores = np.exp(-((grid - true_xyz[::-1]) ** 2).sum(-1) / (2 * 2.0**2)).astype(np.float32)
    peak = find_peaks(scores, "local-max", radius_px=RADIUS, refine=refine)[0, :3]
    tolerance = 0.15 if refine == "quadratic" else 0.35
    np.testing.assert_allclose(peak, true_xyz, atol=tolerance)
    assert np.abs(peak - true_xyz).max() < np.abs(np.rint(true_xyz) - true_xyz).max()


def test_mp_nms_iterations_follow_deepetpicker_equation_6():
    assert mp_nms_iterations(3.0) == 3 and mp_nms_iterations(3.5) == 4 and mp_nms_iterations(0.4) == 1


def test_bad_arguments_are_refused(score_map):
    with pytest.raises(ValueError, match="unknown peak method 'watershed'"):
        find_peaks(score_map, "watershed", radius_px=RADIUS)
    with pytest.raises(ValueError, match="mask shape"):
        find_peaks(score_map, radius_px=RADIUS, mask=np.ones((2, 2, 2), bool))


@pytest.mark.parametrize("blob", ["gaussian", "plateau"])
@pytest.mark.parametrize("method", ["local-max", "mp-nms", "greedy"])
def test_planted_off_grid_centres_come_back_within_0_3_px_of_the_original_grid(blob, method):
    """A ribosome at 10 Å/px is rescaled by 0.3: one score-map voxel spans 3.3 tomogram pixels."""
    config = EngineConfig(diameter_a=330.0, target_diameter_px=10.0, label="tball", loss="dice")
    zoom = 0.3
    original_shape = (60, 150, 160)
    rng = np.random.default_rng(7)
    true_xyz = np.array([[40, 40, 30], [75, 45, 28], [40, 80, 33], [110, 110, 25], [140, 20, 40]], float)
    true_xyz += rng.uniform(-2, 2, true_xyz.shape)
    shape = tuple(int(np.floor((n - 1) * zoom)) + 1 for n in original_shape)
    grid = np.indices(shape).transpose(1, 2, 3, 0)[..., ::-1]
    scores = np.zeros(shape, np.float32)
    for xyz in true_xyz * zoom:
        distance = np.linalg.norm(grid - xyz, axis=-1)
        # network outputs: a smooth Gaussian peak, or the flat top a weak-label network gives
        value = np.exp(-(distance**2) / 4) if blob == "gaussian" else 1 / (1 + np.exp(3 * (distance - 3.5)))
        scores = np.maximum(scores, value.astype(np.float32))
    score_map = ScoreMap(scores[None], zoom, original_shape, 10.0)
    picks = picks_from_scores(score_map, config, "tomo", method, threshold=0.3)
    found = picks[["x", "y", "z"]].to_numpy()
    assert len(found) == len(true_xyz)
    distances = np.linalg.norm(found[:, None] - true_xyz[None], axis=-1).min(axis=0)
    assert distances.max() < 0.3, distances


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("min_distance", [2.0, 7.0, 10.0])
def test_local_max_picks_exactly_what_peak_local_max_picks(seed, min_distance):
    from skimage.feature import peak_local_max

    rng = np.random.default_rng(seed)
    # smooth noise with plateaus (ties) from rounding, as a quantised network output has
    scores = np.round(ndimage.gaussian_filter(rng.random((20, 40, 44)), 1.5) * 50) / 50
    expected = peak_local_max(
        scores, min_distance=max(1, int(round(min_distance / 2))), threshold_abs=0.5, exclude_border=False
    )
    found = find_peaks(scores, "local-max", radius_px=5.0, min_distance_px=min_distance, threshold=0.5, refine="none")
    values = scores[tuple(expected.T)]
    order = np.argsort(-values, kind="stable")  # find_peaks returns best first, as peak_local_max does
    np.testing.assert_array_equal(found[:, :3][:, ::-1].astype(int), expected[order])
    assert len(found) > 3


def test_local_max_of_a_constant_map_is_empty():
    assert len(find_peaks(np.full((8, 8, 8), 0.7, np.float32), "local-max", radius_px=2.0, threshold=0.1)) == 0


def _naive_greedy(scores, radius, threshold):
    work = scores.astype(float).copy()
    grid = np.indices(scores.shape).transpose(1, 2, 3, 0)
    picks = []
    while work.max() >= threshold:
        peak = np.array(np.unravel_index(np.argmax(work), work.shape))
        picks.append(peak)
        work[((grid - peak) ** 2).sum(-1) <= radius**2] = -np.inf
    return np.array(picks)


@pytest.mark.parametrize("radius", [2.0, 3.5])
def test_greedy_picks_exactly_what_repeated_argmax_and_sphere_removal_picks(radius):
    scores = ndimage.gaussian_filter(np.random.default_rng(3).random((16, 24, 28)), 1.0).astype(np.float32)
    expected = _naive_greedy(scores, radius, threshold=0.5)
    found = find_peaks(scores, "greedy", radius_px=radius, threshold=0.5, refine="none")
    np.testing.assert_array_equal(found[:, :3][:, ::-1].astype(int), expected)
    assert len(expected) > 10


@pytest.mark.parametrize("method", ["local-max", "mp-nms"])
def test_the_gpu_pooling_path_gives_the_cpu_paths_picks(score_map, method, monkeypatch):
    """The torch pooling that runs on a GPU, exercised on the CPU: the same picks as scipy's filters."""
    from tomocpt_scipion.engine import peaks

    expected = find_peaks(score_map, method, radius_px=RADIUS, threshold=0.3)
    original = peaks._Filters.__init__

    def torch_pooling(self, device):
        original(self, device)
        self.on_cpu = False

    monkeypatch.setattr(peaks._Filters, "__init__", torch_pooling)
    np.testing.assert_array_equal(find_peaks(score_map, method, radius_px=RADIUS, threshold=0.3), expected)
