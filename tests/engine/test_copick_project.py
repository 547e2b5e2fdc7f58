"""copick projects: picks written and read back to 0.01 px, tomograms out as MRC, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest

from tomocpt_scipion.engine import copick_project, io
from tomocpt_scipion.engine.cli import main

VOXEL_A = 10.0
OBJECTS = ["ribosome", "thyroglobulin"]


@pytest.fixture
def config(tmp_path):
    """An empty filesystem copick project with two particle objects and one membrane."""
    path = tmp_path / "copick.json"
    path.write_text(
        json.dumps(
            {
                "config_type": "filesystem",
                "name": "test",
                "overlay_root": f"local://{tmp_path / 'overlay'}",
                "overlay_fs_args": {"auto_mkdir": True},
                "pickable_objects": [
                    {"name": "ribosome", "is_particle": True, "label": 1, "radius": 140},
                    {"name": "membrane", "is_particle": False, "label": 2},
                    {"name": "thyroglobulin", "is_particle": True, "label": 3, "radius": 85},
                ],
            }
        )
    )
    return path


@pytest.fixture
def table():
    rng = np.random.default_rng(5)
    parts = [
        io.coordinate_table(rng.uniform(0, 60, (6, 3)), run, rng.uniform(0.2, 1, 6), rng.integers(1, 3, 6))
        for run in ("TS_01", "TS_02")
    ]
    return pd.concat(parts, ignore_index=True)


def _sorted(table):
    return table.sort_values(["tomo_name", "class_id", "x"]).reset_index(drop=True)


def test_copick_picks_round_trip_to_a_hundredth_of_a_pixel_with_scores_and_classes(config, table):
    files = copick_project.write_picks(config, table, VOXEL_A, OBJECTS)
    assert len(files) == table.groupby(["tomo_name", "class_id"]).ngroups
    back = copick_project.read_picks(config, VOXEL_A, OBJECTS, user_id=copick_project.DEFAULT_USER)
    expected, back = _sorted(table), _sorted(back)
    assert list(back["tomo_name"]) == list(expected["tomo_name"])
    np.testing.assert_array_equal(back["class_id"], expected["class_id"])
    np.testing.assert_allclose(back[["x", "y", "z"]], expected[["x", "y", "z"]], atol=0.01)
    np.testing.assert_allclose(back["score"], expected["score"], atol=1e-6)


def test_copick_locations_are_angstroms_from_the_first_voxel_centre(config):
    one = io.coordinate_table(np.array([[0.0, 2.5, 7.0]]), "TS_01", 0.9, 1)
    [path] = copick_project.write_picks(config, one, VOXEL_A, OBJECTS)
    point = json.loads(open(path).read())["points"][0]["location"]
    assert (point["x"], point["y"], point["z"]) == pytest.approx((0.0, 25.0, 70.0))


def test_existing_copick_picks_are_kept_unless_overwrite_is_asked(config, table):
    copick_project.write_picks(config, table, VOXEL_A, OBJECTS)
    with pytest.raises(FileExistsError, match="session '0'"):
        copick_project.write_picks(config, table.iloc[:2], VOXEL_A, OBJECTS)
    assert len(copick_project.read_picks(config, VOXEL_A, OBJECTS)) == len(table)
    copick_project.write_picks(config, table.iloc[:1], VOXEL_A, OBJECTS, overwrite=True)
    assert len(copick_project.read_picks(config, VOXEL_A, OBJECTS, runs=["TS_01"])) == 1 + int(
        ((table["tomo_name"] == "TS_01") & (table["class_id"] == 2)).sum()
    )


def test_a_segmentation_object_or_unknown_name_is_refused_naming_the_particles(config, table):
    with pytest.raises(ValueError, match=r"\['membrane'\].*ribosome"):
        copick_project.write_picks(config, table, VOXEL_A, ["ribosome", "membrane"])
    with pytest.raises(ValueError, match="not a copick configuration"):
        copick_project.read_picks(io.write_coordinates(config.parent / "c.csv", table), VOXEL_A)


def test_copick_tomograms_come_out_as_mrc_with_their_voxel_size(config):
    root = copick_project.open_project(config)
    volume = np.random.default_rng(0).normal(size=(16, 24, 32)).astype(np.float32)
    root.new_run("TS_01").new_voxel_spacing(VOXEL_A).new_tomogram("wbp").from_numpy(volume)
    [mrc] = copick_project.export_tomograms(config, VOXEL_A, "wbp", config.parent / "mrc")
    data, pixel = io.read_mrc(mrc)
    np.testing.assert_allclose(data, volume, rtol=1e-6)
    assert mrc.name == "TS_01.mrc" and pixel == pytest.approx(VOXEL_A)
    with pytest.raises(ValueError, match="no 'denoised' tomogram"):
        copick_project.export_tomograms(config, VOXEL_A, "denoised", config.parent / "other")
    assert not (config.parent / "other").exists()


def test_cli_moves_picks_from_star_into_copick_and_back(config, table, tmp_path):
    star = io.write_coordinates(tmp_path / "picks.star", table, pixel_size_a=VOXEL_A)
    assert main(["copick-export", str(star), str(config), "--objects", *OBJECTS]) == 0
    assert (
        main(
            [
                "copick-import",
                str(config),
                str(tmp_path / "back.star"),
                "--voxel-size",
                str(VOXEL_A),
                "--objects",
                *OBJECTS,
            ]
        )
        == 0
    )
    back = io.read_coordinates(tmp_path / "back.star")
    np.testing.assert_allclose(_sorted(back)[["x", "y", "z"]], _sorted(table)[["x", "y", "z"]], atol=0.01)
