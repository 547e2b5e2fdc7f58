"""The pick browser: which picks cross a slice and how large they are drawn, the threshold and
view controls, the save callback, and a screenshot (kept in the test artefacts)."""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tomocpt_scipion.engine import io  # noqa: E402
from tomocpt_scipion.engine.browser import PickBrowser, slice_picks  # noqa: E402
from tomocpt_scipion.engine.cli import main  # noqa: E402

ARTEFACTS = Path(os.environ.get("TOMOCPT_TEST_ARTEFACTS", Path(__file__).parents[2] / "test-artefacts"))


@pytest.fixture
def scene():
    rng = np.random.default_rng(2)
    volume = rng.normal(size=(40, 64, 80)).astype(np.float32)
    xyz = np.array([[20.0, 30, 10], [50, 20, 20], [60, 40, 22], [30, 50, 30]])
    for x, y, z in xyz.astype(int):
        volume[z - 2 : z + 3, y - 2 : y + 3, x - 2 : x + 3] += 4
    table = io.coordinate_table(xyz, "tomo", [0.95, 0.8, 0.4, 0.2], [1, 1, 2, 1])
    return volume, table


def test_a_pick_is_drawn_on_the_slices_its_sphere_crosses_with_the_cross_section_radius(scene):
    _, table = scene
    shown = slice_picks(table, "xy", 13, {1: 5.0, 2: 3.0}, threshold=0.0)
    assert list(shown.u) == [20.0] and shown.radius[0] == pytest.approx(4.0)  # √(5² − 3²)
    assert len(slice_picks(table, "xy", 16, {1: 5.0, 2: 3.0}, 0.0).u) == 1  # z = 20 only (z = 22 is class 2: r 3)
    side = slice_picks(table, "xz", 30, {1: 5.0, 2: 3.0}, 0.0)  # y = 30: the first pick, seen from the side
    assert (list(side.u), list(side.v)) == ([20.0], [10.0])


def test_the_threshold_hides_lower_scores(scene):
    _, table = scene
    assert len(slice_picks(table, "xy", 21, {1: 5.0, 2: 5.0}, 0.0).u) == 2
    assert list(slice_picks(table, "xy", 21, {1: 5.0, 2: 5.0}, 0.5).score) == [0.8]


def test_browser_controls_move_slice_view_and_threshold_and_save_hands_over_the_threshold(scene):
    volume, table = scene
    saved = []
    browser = PickBrowser(volume, table, {1: 5.0, 2: 3.0}, threshold=0.1, title="tomo", on_save=saved.append)
    browser.slice_slider.set_val(10)
    assert browser.index == 10 and len(browser.picks_shown().u) == 1
    browser.threshold_slider.set_val(0.9)
    assert len(browser.picks_shown().u) == 1 and browser.picks_shown().score[0] == 0.95
    browser.set_view("yz")
    assert browser.index == volume.shape[2] // 2 and browser.slice_slider.valmax == volume.shape[2] - 1
    browser.save()
    assert saved == [pytest.approx(0.9)]
    with pytest.raises(ValueError, match="valid"):
        browser.set_view("zz")
    plt.close(browser.figure)


def test_browser_screenshot_shows_the_slice_the_circles_and_the_histogram(scene):
    volume, table = scene
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    browser = PickBrowser(volume, table, {1: 6.0, 2: 6.0}, threshold=0.3, title="tomo", on_save=lambda t: None)
    browser.slice_slider.set_val(20)
    path = browser.screenshot(ARTEFACTS / "pick_browser.png")
    image = plt.imread(path)
    plt.close(browser.figure)
    assert image.shape[0] > 500 and image.shape[1] > 800
    assert len(browser.picks_shown().u) == 2
    # the kept part of the histogram is orange (tab:orange ≈ (1.0, 0.5, 0.05))
    orange = (image[..., 0] > 0.9) & (np.abs(image[..., 1] - 0.5) < 0.1) & (image[..., 2] < 0.2)
    assert orange.sum() > 50


def test_browse_command_writes_a_screenshot_without_a_display(scene, tmp_path):
    volume, table = scene
    mrc = io.write_mrc(tmp_path / "tomo.mrc", volume, 10.0)
    picks = io.write_coordinates(tmp_path / "picks.csv", table)
    out = tmp_path / "shot.png"
    assert (
        main(
            [
                "browse",
                "--tomogram",
                str(mrc),
                "--picks",
                str(picks),
                "--diameter",
                "100",
                "--view",
                "xz",
                "--threshold",
                "0.5",
                "--screenshot",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 10_000
    assert (
        main(
            [
                "browse",
                "--tomogram",
                str(mrc),
                "--picks",
                str(picks),
                "--diameter",
                "100",
                "60",
                "70",
                "--screenshot",
                str(out),
            ]
        )
        == 0
    )
