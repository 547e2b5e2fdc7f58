"""File formats: round trips, the RELION 5 convention, and clear errors on bad files."""

import mrcfile
import numpy as np
import pandas as pd
import pytest

from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.cli import main

SHAPES = {"TS_01": (50, 101, 120), "TS_02": (41, 64, 64)}  # (z, y, x), odd sizes on purpose


@pytest.fixture
def table():
    rng = np.random.default_rng(3)
    parts = []
    for name, (nz, ny, nx) in SHAPES.items():
        xyz = rng.uniform(0, 1, (7, 3)) * [nx - 1, ny - 1, nz - 1]
        parts.append(io.coordinate_table(xyz, name, rng.uniform(0, 1, 7), rng.integers(1, 4, 7)))
    return pd.concat(parts, ignore_index=True)


def _assert_same_coordinates(expected, actual, check_score=True, check_class=True):
    assert list(actual["tomo_name"]) == list(expected["tomo_name"])
    np.testing.assert_allclose(actual[["x", "y", "z"]].to_numpy(), expected[["x", "y", "z"]].to_numpy(), atol=0.01)
    if check_score:
        np.testing.assert_allclose(actual["score"], expected["score"], atol=1e-4)
    if check_class:
        np.testing.assert_array_equal(actual["class_id"], expected["class_id"])


def test_mrc_round_trip_keeps_data_and_pixel_size_and_is_memory_mapped(tmp_path):
    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    path = io.write_mrc(tmp_path / "v.mrc", data, 13.5)
    read, pixel = io.read_mrc(path)
    assert isinstance(read, np.memmap)
    np.testing.assert_array_equal(read, data)
    assert pixel == pytest.approx(13.5)
    assert io.read_mrc_header(path) == ((5, 6, 7), pytest.approx(13.5))


def test_mrc_writer_refuses_to_overwrite_and_leaves_no_partial_file(tmp_path):
    path = io.write_mrc(tmp_path / "v.mrc", np.zeros((2, 3, 4), np.float32), 1.0)
    with pytest.raises(FileExistsError, match="v.mrc"):
        io.write_mrc(path, np.ones((2, 3, 4), np.float32), 1.0)
    assert io.read_mrc(path)[0].max() == 0
    with pytest.raises(ValueError, match="voxel_size_a"):
        io.write_mrc(tmp_path / "w.mrc", np.zeros((2, 3, 4), np.float32), 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mrc"]


def test_mrc_without_pixel_size_reads_as_none(tmp_path):
    with mrcfile.new(tmp_path / "v.mrc") as mrc:
        mrc.set_data(np.zeros((2, 3, 4), np.float32))
    assert io.read_mrc(tmp_path / "v.mrc")[1] is None


@pytest.mark.parametrize("suffix", [".star", ".csv", ".tbl"])
def test_multi_tomogram_formats_round_trip_to_a_hundredth_of_a_pixel(tmp_path, table, suffix):
    path = io.write_coordinates(tmp_path / f"c{suffix}", table, pixel_size_a=7.4, tomo_names=list(SHAPES))
    back = io.read_coordinates(path, tomo_names=list(SHAPES))
    _assert_same_coordinates(table, back)


def test_relion5_star_round_trip(tmp_path, table):
    path = io.write_coordinates(tmp_path / "c.star", table, pixel_size_a=7.4, tomo_shapes=SHAPES, relion_version=5)
    assert "rlnCenteredCoordinateXAngst" in path.read_text()
    _assert_same_coordinates(table, io.read_coordinates(path, tomo_shapes=SHAPES))


@pytest.mark.parametrize("suffix,keeps_class", [(".mod", True), (".coords", True), (".txt", False)])
def test_single_tomogram_formats_round_trip_to_a_hundredth_of_a_pixel(tmp_path, table, suffix, keeps_class):
    one = table[table["tomo_name"] == "TS_01"]
    # an IMOD model keeps one object per class: rows come back grouped by class
    one = one.sort_values("class_id", kind="stable").reset_index(drop=True)
    path = io.write_coordinates(tmp_path / f"TS_01{suffix}", one)
    _assert_same_coordinates(one, io.read_coordinates(path), check_score=False, check_class=keeps_class)


def test_warp_star_round_trips_to_a_hundredth_of_a_pixel_with_its_pixel_size(tmp_path, table):
    path = io.write_coordinates(tmp_path / "warp.star", table, "warp", pixel_size_a=7.4)
    text = path.read_text()
    assert "TS_01.tomostar" in text and "data_optics" not in text and "rlnTomoName" not in text
    assert io.coordinate_pixel_size(path) == pytest.approx(7.4)
    _assert_same_coordinates(table, io.read_coordinates(path, "warp"))


def test_warp_template_matching_star_reads_tomograms_from_the_tomostar_names(tmp_path):
    # The columns WarpTools' ts_template_match writes (coordinates here in pixels, as
    # ts_export_particles --coords_angpix reads them).
    star = tmp_path / "TS_7_10.00Apx.star"
    star.write_text(
        "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
        "_rlnAngleRot #4\n_rlnAngleTilt #5\n_rlnAnglePsi #6\n_rlnMicrographName #7\n"
        "_rlnAutopickFigureOfMerit #8\n12.5 40.25 7.0 0 0 0 TS_7.tomostar 6.5\n"
    )
    table = io.read_coordinates(star, "warp")
    assert list(table["tomo_name"]) == ["TS_7"]
    np.testing.assert_allclose(table[["x", "y", "z", "score"]].to_numpy()[0], [12.5, 40.25, 7.0, 6.5])


def test_export_writes_warp_star_from_relion_star_keeping_the_pixel_size(tmp_path, table):
    relion = io.write_coordinates(tmp_path / "picks.star", table, pixel_size_a=7.4)
    assert main(["export", str(relion), str(tmp_path / "warp.star"), "--to-format", "warp"]) == 0
    assert io.coordinate_pixel_size(tmp_path / "warp.star") == pytest.approx(7.4)
    _assert_same_coordinates(table, io.read_coordinates(tmp_path / "warp.star", "warp"))


def test_relion5_centred_angstroms_match_a_hand_computed_example(tmp_path):
    # Tomogram of x=100, y=80, z=41 voxels at 10 Å: centre (50, 40, 20.5) px.
    star = tmp_path / "r5.star"
    star.write_text(
        "data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCenteredCoordinateXAngst #2\n"
        "_rlnCenteredCoordinateYAngst #3\n_rlnCenteredCoordinateZAngst #4\n"
        "TS_1 -500.0 123.0 0.0\n"
    )
    table = io.read_coordinates(star, pixel_size_a=10.0, tomo_shapes={"TS_1": (41, 80, 100)})
    np.testing.assert_allclose(table[["x", "y", "z"]].to_numpy()[0], [0.0, 52.3, 20.5])


def test_relion4_origin_shifts_in_angstroms_are_subtracted(tmp_path):
    star = tmp_path / "r4.star"
    star.write_text(
        "data_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n1 5.0\n\n"
        "data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
        "_rlnCoordinateZ #4\n_rlnOriginXAngst #5\n_rlnOriginYAngst #6\n_rlnOriginZAngst #7\n"
        "TS_1 10 20 30 5.0 -10.0 0.0\n"
    )
    np.testing.assert_allclose(io.read_coordinates(star)[["x", "y", "z"]].to_numpy()[0], [9, 22, 30])


def test_imod_points_use_the_half_pixel_convention_of_imod(tmp_path):
    import imodmodel

    imodmodel.write(pd.DataFrame({"x": [10.5], "y": [3.5], "z": [7.0]}), tmp_path / "m.mod")
    np.testing.assert_allclose(io.read_coordinates(tmp_path / "m.mod")[["x", "y", "z"]].to_numpy()[0], [10, 3, 7])


def test_dynamo_table_puts_xyz_in_columns_24_to_26_one_based_and_tomogram_in_20(tmp_path):
    table = io.coordinate_table([[0.0, 1.0, 2.0]], "TS_02")
    path = io.write_coordinates(tmp_path / "t.tbl", table, tomo_names=["TS_01", "TS_02"])
    row = np.loadtxt(path)
    assert row.shape == (35,)
    np.testing.assert_allclose(row[23:26], [1.0, 2.0, 3.0])
    assert row[19] == 2


# ----------------------------------------------------------------------------- bad input
def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_truncated_mrc_gives_one_line_naming_the_file(tmp_path, capsys):
    path = io.write_mrc(tmp_path / "tomo.mrc", np.zeros((8, 8, 8), np.float32), 10.0)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(io.MrcFormatError, match="tomo.mrc"):
        io.read_mrc(path)
    (tmp_path / "c.txt").write_text("1 2 3\n")
    err = _cli_error(capsys, ["export", str(tmp_path / "c.txt"), str(tmp_path / "c.star"), "--tomograms", str(path)])
    assert "tomo.mrc" in err


def test_star_without_coordinate_columns_gives_one_line_naming_the_file(tmp_path, capsys):
    star = tmp_path / "nocoords.star"
    star.write_text("data_particles\n\nloop_\n_rlnTomoName #1\n_rlnAngleRot #2\nTS_1 10\n")
    err = _cli_error(capsys, ["export", str(star), str(tmp_path / "out.csv")])
    assert "nocoords.star" in err and "rlnCoordinateX" in err
    assert not (tmp_path / "out.csv").exists()


def test_coordinates_naming_an_unknown_tomogram_give_one_line_naming_the_file(tmp_path, capsys):
    tomo = io.write_mrc(tmp_path / "TS_01.mrc", np.zeros((8, 8, 8), np.float32), 10.0)
    star = io.write_coordinates(tmp_path / "picks.star", io.coordinate_table([[1, 2, 3]], "TS_99"), pixel_size_a=10.0)
    err = _cli_error(capsys, ["export", str(star), str(tmp_path / "out.csv"), "--tomograms", str(tomo)])
    assert "picks.star" in err and "TS_99" in err


def test_text_file_with_too_few_columns_names_the_file(tmp_path):
    (tmp_path / "bad.coords").write_text("1 2 3\n")
    with pytest.raises(io.CoordinateFormatError, match="bad.coords.*4 columns"):
        io.read_coordinates(tmp_path / "bad.coords")


def test_export_converts_star_to_relion5_with_sizes_from_the_tomograms(tmp_path):
    tomo = io.write_mrc(tmp_path / "TS_01.mrc", np.zeros((9, 10, 12), np.float32), 8.0)
    star = io.write_coordinates(tmp_path / "in.star", io.coordinate_table([[6, 5, 4.5]], "TS_01"), pixel_size_a=8.0)
    assert main(["export", str(star), str(tmp_path / "out.star"), "--relion", "5", "--tomograms", str(tomo)]) == 0
    back = io.read_coordinates(tmp_path / "out.star", tomo_shapes={"TS_01": (9, 10, 12)})
    assert back.loc[0, ["x", "y", "z"]].tolist() == pytest.approx([6, 5, 4.5])
