"""Simulator: deterministic, physically plausible, writes what the pipeline reads."""

import json

import numpy as np
import pytest
from scipy import ndimage

from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.cli import main
from tomocpt_scipion.engine.simulate import SimulationConfig, simulate_tomogram

SMALL = SimulationConfig(shape_zyx=(24, 48, 48), pixel_size_a=20.0, n_target=6, n_distractors=4, n_gold=1)
SMALL_FOURIER = SimulationConfig(**{**SMALL.__dict__, "mode": "fourier"})


@pytest.mark.parametrize("config", [SMALL, SMALL_FOURIER], ids=["wbp", "fourier"])
def test_same_seed_gives_the_same_tomogram_and_another_seed_does_not(config):
    a, b, c = (simulate_tomogram(config, seed) for seed in (1, 1, 2))
    np.testing.assert_array_equal(a.volume, b.volume)
    np.testing.assert_array_equal(a.coordinates["4v94"], b.coordinates["4v94"])
    assert not np.array_equal(a.volume, c.volume)
    if config.mode == "wbp":
        np.testing.assert_array_equal(a.tilt_series, b.tilt_series)
        assert a.tilt_series.shape == (41, 48, 48) and a.tilt_angles_deg[[0, -1]].tolist() == [-60, 60]


def test_particle_centres_lie_inside_the_volume_and_do_not_overlap():
    tomo = simulate_tomogram(SMALL, 4)
    xyz = np.concatenate([c for c in tomo.coordinates.values()])
    assert np.all(xyz >= 0) and np.all(xyz <= np.array(SMALL.shape_zyx[::-1]) - 1)
    target = tomo.coordinates["4v94"]
    distances = np.linalg.norm(target[:, None] - target[None], axis=-1) + np.eye(len(target)) * 1e9
    # two ribosomes' densities never interpenetrate: centres at least ~ one radius apart
    assert distances.min() * SMALL.pixel_size_a > 0.4 * tomo.diameters_a["4v94"]


def test_missing_wedge_removes_the_fourier_components_outside_the_tilt_range():
    config = SimulationConfig(**{**SMALL_FOURIER.__dict__, "tilt_range_deg": 45.0})
    power = np.abs(np.fft.rfftn(simulate_tomogram(config, 0).volume)) ** 2
    kz = np.abs(np.fft.fftfreq(config.shape_zyx[0]))[:, None, None]
    kx = np.abs(np.fft.rfftfreq(config.shape_zyx[2]))[None, None, :]
    inside_wedge = np.broadcast_to(kz > kx * np.tan(np.deg2rad(45.0)) + 0.02, power.shape)
    assert power[inside_wedge].max() < 1e-6 * power.max()


def test_snr_sets_the_signal_to_noise_variance_ratio():
    clean = simulate_tomogram(SimulationConfig(**{**SMALL_FOURIER.__dict__, "snr": 1e6}), 5).volume
    noisy = simulate_tomogram(SimulationConfig(**{**SMALL_FOURIER.__dict__, "snr": 0.25}), 5).volume
    assert clean.var() / (noisy - clean).var() == pytest.approx(0.25, rel=0.05)


def test_unknown_species_and_bad_values_are_refused():
    with pytest.raises(ValueError, match="unknown species 'nope'"):
        SimulationConfig(target="nope")
    with pytest.raises(ValueError, match="snr"):
        SimulationConfig(snr=0)
    with pytest.raises(ValueError, match="unknown simulation mode 'sirt'"):
        SimulationConfig(mode="sirt")
    with pytest.raises(ValueError, match="dose_e_per_a2"):
        SimulationConfig(dose_e_per_a2=0)
    with pytest.raises(ValueError, match="tilt_angles_deg"):
        SimulationConfig(tilt_angles_deg=(0.0, 95.0))


def test_wbp_mode_reconstructs_dark_particles_and_more_dose_makes_them_stand_out_more():
    def contrast_at_targets(dose):
        config = SimulationConfig(**{**SMALL.__dict__, "n_gold": 0, "membrane": False, "dose_e_per_a2": dose})
        tomo = simulate_tomogram(config, 3)
        smooth = ndimage.gaussian_filter(tomo.volume, 2.0)
        z, y, x = np.rint(tomo.coordinates["4v94"][:, ::-1]).astype(int).T
        return (smooth[z, y, x].mean() - smooth.mean()) / smooth.std()

    low, high = contrast_at_targets(20.0), contrast_at_targets(2000.0)
    assert high < low < 0  # protein darker than ice, in σ of the smoothed tomogram


def test_simulate_command_writes_tomograms_star_text_and_summary(tmp_path, capsys):
    assert (
        main(
            [
                "simulate",
                "--out",
                str(tmp_path),
                "--n-tomograms",
                "2",
                "--shape",
                "24",
                "48",
                "48",
                "--pixel-size",
                "20",
                "--n-target",
                "5",
                "--n-distractors",
                "3",
                "--seed",
                "9",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "tomo_000.mrc" in out and "tomo_001.mrc" in out
    summary = json.loads((tmp_path / "simulation.json").read_text())
    data, pixel = io.read_mrc(tmp_path / "tomograms" / "tomo_001.mrc")
    assert data.shape == (24, 48, 48) and pixel == pytest.approx(20.0)
    star = io.read_coordinates(tmp_path / "coordinates" / "4v94.star")
    assert set(star["tomo_name"]) == {"tomo_000", "tomo_001"}
    assert len(star) == summary["counts"]["tomo_000"]["4v94"] + summary["counts"]["tomo_001"]["4v94"]
    text = io.read_coordinates(tmp_path / "coordinates" / "4v94" / "tomo_001.txt")
    np.testing.assert_allclose(text[["x", "y", "z"]], star[star.tomo_name == "tomo_001"][["x", "y", "z"]], atol=1e-3)
    stack, _ = io.read_mrc(tmp_path / "tilt_series" / "tomo_001.mrc")
    angles = np.loadtxt(tmp_path / "tilt_series" / "tomo_001.tlt")
    assert stack.shape == (len(angles), 48, 48) and angles[0] == -60 and angles[-1] == 60
    assert main(["simulate", "--out", str(tmp_path), "--shape", "24", "48", "48"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
