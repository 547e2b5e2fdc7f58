"""Bad input ends a command with one line naming the file or value, exit 2, and changes nothing on disk."""
import hashlib
import os

import numpy as np
import pytest

from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.cli import main


def _state(folder):
    """{relative path: sha256} of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workspace(tiny_dataset, tmp_path):
    """A copy of one tiny tomogram, its ribosomes and a place for outputs."""
    out, summary = tiny_dataset
    volume, pixel = io.read_mrc(out / "tomograms" / "tomo_000.mrc")
    io.write_mrc(tmp_path / "tomo.mrc", np.array(volume), pixel)
    truth = io.read_coordinates(out / "coordinates" / "4v94" / "tomo_000.txt")
    io.write_coordinates(tmp_path / "tomo.txt", truth)
    return tmp_path, summary["diameters_a"]["4v94"], volume, pixel


def _run(argv, capsys):
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err.strip().splitlines()


def _train_argv(folder, diameter, tomogram="tomo.mrc", *extra):
    return ["train", "--tomograms", folder / tomogram, "--coordinates", folder / "tomo.txt", "--diameter", diameter,
            "--recipe", "deepetpicker", "--model-size", "small", "--patch-size", "32", "--epochs", "1",
            "--out", folder / "model", *extra]


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_train_on_a_tomogram_with_non_finite_voxels_names_it_and_writes_nothing(workspace, capsys, bad):
    folder, diameter, volume, pixel = workspace
    broken = np.array(volume)
    broken[3, 4, 5:9] = float(bad)
    io.write_mrc(folder / "broken.mrc", broken, pixel)
    before = _state(folder)
    status, err = _run(_train_argv(folder, diameter, "broken.mrc"), capsys)
    assert status == 2 and len(err) == 1
    assert "broken.mrc" in err[0] and "4 voxel(s) are NaN or infinite" in err[0]
    assert _state(folder) == before


def test_a_diameter_wider_than_the_tomogram_is_refused_at_once(workspace, capsys):
    folder, _, volume, pixel = workspace
    before = _state(folder)
    status, err = _run(_train_argv(folder, 1e9), capsys)
    assert status == 2 and "tomo.mrc" in err[-1] and "wider than the tomogram's smallest side" in err[-1]
    assert _state(folder) == before


@pytest.mark.parametrize("option,value,message", [
    ("--batch-size", "0", "--batch-size: 0 is out of range: it must be >= 1"),
    ("--batch-size", "-3", "--batch-size: -3 is out of range"),
    ("--epochs", "nan", "--epochs: 'nan' is not a int number"),
    ("--lr", "inf", "--lr: inf is out of range"),
])
def test_train_options_out_of_range_are_refused_by_name(workspace, capsys, option, value, message):
    folder, diameter, _, _ = workspace
    before = _state(folder)
    with pytest.raises(SystemExit) as exit_status:
        main([str(a) for a in _train_argv(folder, diameter, "tomo.mrc", option, value)])
    assert exit_status.value.code == 2 and message in capsys.readouterr().err
    assert _state(folder) == before


@pytest.mark.parametrize("option,value", [("--min-distance", "-5"), ("--max-picks", "0"), ("--overlap", "1.0"),
                                          ("--threshold", "nan")])
def test_predict_options_out_of_range_are_refused_by_name(workspace, capsys, option, value):
    folder, _, _, _ = workspace
    with pytest.raises(SystemExit) as exit_status:
        main(["predict", "--model", "m.pt", "--tomograms", str(folder / "tomo.mrc"), "--out", str(folder / "p"),
              option, value])
    assert exit_status.value.code == 2 and f"argument {option}: " in capsys.readouterr().err


def test_a_validation_tomogram_without_particles_is_refused(workspace, capsys):
    folder, diameter, _, _ = workspace
    io.write_mrc(folder / "empty.mrc", np.array(io.read_mrc(folder / "tomo.mrc")[0]), 20.0)
    (folder / "none.csv").write_text("tomo_name,x,y,z,score,class_id\n")
    before = _state(folder)
    status, err = _run(_train_argv(folder, diameter, "tomo.mrc", "--val-tomograms", folder / "empty.mrc",
                                   "--val-coordinates", folder / "none.csv"), capsys)
    assert status == 2 and len(err) == 1 and err[0].endswith("none.csv: holds no coordinates.")
    assert _state(folder) == before
    from tomocpt_scipion.engine.config import recipe_config
    from tomocpt_scipion.engine.train import train

    config = recipe_config("deepetpicker", diameter_a=diameter, model_size="small", patch_size=32, epochs=1)
    coordinates = io.read_coordinates(folder / "tomo.txt", tomo_name="tomo").assign(class_id=1)
    with pytest.raises(ValueError, match=r"\['empty'\] have no particle"):
        train([folder / "tomo.mrc"], coordinates, config, folder / "model", [folder / "empty.mrc"],
              coordinates.iloc[:0].assign(tomo_name="empty"))
    assert _state(folder) == before


def test_outputs_get_the_mode_the_umask_gives_not_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        path = io.write_mrc(tmp_path / "shared.mrc", np.zeros((4, 4, 4), np.float32), 10.0)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_names_the_destination_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    import torch

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"model\.pt: could not be written \(basic_ios::clear"):
        with io.atomic_path(tmp_path / "model.pt") as tmp:
            torch.save({}, tmp)
    assert list(tmp_path.iterdir()) == []
