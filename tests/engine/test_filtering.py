"""Filtering picks without the network: threshold, top N, minimum distance, mask."""

import numpy as np

from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.cli import main
from tomocpt_scipion.engine.filtering import filter_picks, mask_binning, suppress_close


def _picks():
    """Five picks in "tomo" (two 3 px apart), one in "other"."""
    xyz = np.array([[10, 10, 10], [13, 10, 10], [40, 40, 10], [60, 20, 10], [60, 20, 30], [5, 5, 5]], float)
    return io.coordinate_table(
        xyz, np.array(["tomo"] * 5 + ["other"], object), np.array([0.9, 0.8, 0.7, 0.4, 0.2, 0.95])
    )


def test_suppression_keeps_the_best_of_each_close_group_best_first():
    points = np.array([[0.0, 0, 0], [3, 0, 0], [10, 0, 0], [12, 0, 0]])
    assert suppress_close(points, np.array([0.5, 0.9, 0.1, 0.3]), 4.0).tolist() == [1, 3]
    assert suppress_close(points, np.array([0.5, 0.9, 0.1, 0.3]), 0.0).tolist() == [1, 0, 3, 2]


def test_each_filter_alone_and_together():
    picks = _picks()
    assert sorted(filter_picks(picks, threshold=0.5)["score"]) == [0.7, 0.8, 0.9, 0.95]
    assert filter_picks(picks, top_n=2).groupby("tomo_name").size().to_dict() == {"other": 1, "tomo": 2}
    spaced = filter_picks(picks, min_distance_px=5.0)
    assert 0.8 not in spaced["score"].tolist() and len(spaced) == 5
    both = filter_picks(picks, threshold=0.3, top_n=2, min_distance_px=5.0)
    assert both[both["tomo_name"] == "tomo"]["score"].tolist() == [0.9, 0.7]
    assert list(filter_picks(picks, threshold=0.5)["score"]) == sorted(
        filter_picks(picks, threshold=0.5)["score"], reverse=True
    )


def test_a_binned_mask_keeps_the_picks_inside_it():
    picks = _picks()
    mask = np.zeros((32, 40, 40), np.int8)
    mask[:, :, :16] = 1  # x < 32 in the tomogram's pixels (binned 2 ×)
    assert mask_binning(mask.shape, (64, 80, 80)) == 2
    kept = filter_picks(picks, masks={"tomo": (mask, 2)})
    assert sorted(kept[kept["tomo_name"] == "tomo"]["x"]) == [10.0, 13.0]
    assert (kept["tomo_name"] == "other").sum() == 1  # no mask: kept whole


def test_the_filter_command_writes_a_new_set_and_refuses_to_overwrite(tmp_path, capsys):
    io.write_coordinates(tmp_path / "picks.star", _picks(), pixel_size_a=10.0)
    argv = [
        "filter",
        "--picks",
        str(tmp_path / "picks.star"),
        "--out",
        str(tmp_path / "kept.star"),
        "--threshold",
        "0.5",
        "--min-distance",
        "50",
    ]
    assert main(argv) == 0 and "Kept 3 of 6 pick(s) in 2 tomogram(s)" in capsys.readouterr().out
    kept = io.read_coordinates(tmp_path / "kept.star")
    assert sorted(kept["score"]) == [0.7, 0.9, 0.95]
    before = (tmp_path / "kept.star").read_bytes()
    assert main(argv) == 2 and "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "kept.star").read_bytes() == before


def test_a_minimum_distance_without_a_pixel_size_is_refused(tmp_path, capsys):
    io.write_coordinates(tmp_path / "picks.csv", _picks())
    status = main(
        ["filter", "--picks", str(tmp_path / "picks.csv"), "--out", str(tmp_path / "kept.csv"), "--min-distance", "50"]
    )
    assert status == 2 and "--min-distance is in Å" in capsys.readouterr().err
    assert not (tmp_path / "kept.csv").exists()
