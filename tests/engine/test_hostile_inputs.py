"""Bad input ends a command with one line naming the file or value, exit 2, and changes nothing on disk."""

import hashlib
import os

import numpy as np
import pytest

from tomocpt_scipion.engine import io
from tomocpt_scipion.engine.cli import main


def _state(folder):
    """{relative path: sha256} of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


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
    return [
        "train",
        "--tomograms",
        folder / tomogram,
        "--coordinates",
        folder / "tomo.txt",
        "--diameter",
        diameter,
        "--recipe",
        "deepetpicker",
        "--model-size",
        "small",
        "--patch-size",
        "32",
        "--epochs",
        "1",
        "--centring-steps",
        "0",
        "--out",
        folder / "model",
        *extra,
    ]


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


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--batch-size", "0", "--batch-size: 0 is out of range: it must be >= 1"),
        ("--batch-size", "-3", "--batch-size: -3 is out of range"),
        ("--epochs", "nan", "--epochs: 'nan' is not a int number"),
        ("--lr", "inf", "--lr: inf is out of range"),
    ],
)
def test_train_options_out_of_range_are_refused_by_name(workspace, capsys, option, value, message):
    folder, diameter, _, _ = workspace
    before = _state(folder)
    with pytest.raises(SystemExit) as exit_status:
        main([str(a) for a in _train_argv(folder, diameter, "tomo.mrc", option, value)])
    assert exit_status.value.code == 2 and message in capsys.readouterr().err
    assert _state(folder) == before


@pytest.mark.parametrize(
    "option,value", [("--min-distance", "-5"), ("--max-picks", "0"), ("--overlap", "1.0"), ("--threshold", "nan")]
)
def test_predict_options_out_of_range_are_refused_by_name(workspace, capsys, option, value):
    folder, _, _, _ = workspace
    with pytest.raises(SystemExit) as exit_status:
        main(
            [
                "predict",
                "--model",
                "m.pt",
                "--tomograms",
                str(folder / "tomo.mrc"),
                "--out",
                str(folder / "p"),
                option,
                value,
            ]
        )
    assert exit_status.value.code == 2 and f"argument {option}: " in capsys.readouterr().err


def test_a_validation_tomogram_without_particles_is_refused(workspace, capsys):
    folder, diameter, _, _ = workspace
    io.write_mrc(folder / "empty.mrc", np.array(io.read_mrc(folder / "tomo.mrc")[0]), 20.0)
    (folder / "none.csv").write_text("tomo_name,x,y,z,score,class_id\n")
    before = _state(folder)
    status, err = _run(
        _train_argv(
            folder,
            diameter,
            "tomo.mrc",
            "--val-tomograms",
            folder / "empty.mrc",
            "--val-coordinates",
            folder / "none.csv",
        ),
        capsys,
    )
    assert status == 2 and len(err) == 1 and err[0].endswith("none.csv: holds no coordinates.")
    assert _state(folder) == before
    from tomocpt_scipion.engine.config import recipe_config
    from tomocpt_scipion.engine.train import train

    config = recipe_config("deepetpicker", diameter_a=diameter, model_size="small", patch_size=32, epochs=1)
    coordinates = io.read_coordinates(folder / "tomo.txt", tomo_name="tomo").assign(class_id=1)
    with pytest.raises(ValueError, match=r"\['empty'\] have no particle"):
        train(
            [folder / "tomo.mrc"],
            coordinates,
            config,
            folder / "model",
            [folder / "empty.mrc"],
            coordinates.iloc[:0].assign(tomo_name="empty"),
        )
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


# ----------------------------------------------------------------------------- a trained model to pick with
@pytest.fixture(scope="module")
def trained_model(tiny_dataset, tmp_path_factory):
    """A one-epoch model of the tiny ribosomes (trained once for this module)."""
    out, summary = tiny_dataset
    folder = tmp_path_factory.mktemp("trained")
    status = main(
        [
            str(a)
            for a in [
                "train",
                "--tomograms",
                out / "tomograms" / "tomo_000.mrc",
                "--coordinates",
                out / "coordinates" / "4v94" / "tomo_000.txt",
                "--diameter",
                summary["diameters_a"]["4v94"],
                "--recipe",
                "deepetpicker",
                "--model-size",
                "small",
                "--patch-size",
                "32",
                "--epochs",
                "1",
                "--centring-steps",
                "20",
                "--out",
                folder,
            ]
        ]
    )
    assert status == 0
    return folder / "model.pt"


def _predict_argv(folder, model, *extra):
    return [
        "predict",
        "--model",
        model,
        "--tomograms",
        folder / "tomo.mrc",
        "--out",
        folder / "picks",
        "--no-tta",
        *extra,
    ]


def test_predict_refuses_an_existing_output_before_writing_any(workspace, trained_model, capsys):
    folder, _, _, _ = workspace
    (folder / "picks").mkdir()
    (folder / "picks" / "tomo.coords").write_text("mine\n")
    before = _state(folder)
    status, err = _run(_predict_argv(folder, trained_model, "--save-scores", "--preview"), capsys)
    assert status == 2 and "tomo.coords" in err[-1] and "refusing to overwrite" in err[-1]
    assert _state(folder) == before


def test_a_full_disk_while_predicting_leaves_no_partial_outputs(workspace, trained_model, capsys, monkeypatch):
    folder, _, _, _ = workspace
    from tomocpt_scipion.engine import predict

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict, "write_mrc", full_disk)  # the score maps fail after the picks were found
    before = _state(folder)
    status, err = _run(_predict_argv(folder, trained_model, "--save-scores", "--preview"), capsys)
    assert status == 2 and err[-1].endswith("No space left on device")
    assert _state(folder) == before and not (folder / "picks").exists()


def test_a_full_disk_while_training_removes_what_the_run_wrote(workspace, capsys, monkeypatch):
    folder, diameter, _, _ = workspace
    import torch

    real_save = torch.save

    def full_disk_for_the_model(obj, path, *args, **kwargs):
        if "model.pt" in str(path):
            raise RuntimeError("basic_ios::clear: iostream error")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_for_the_model)
    before = _state(folder)
    status, err = _run(_train_argv(folder, diameter), capsys)
    assert status == 2 and "model.pt: could not be written" in err[-1]
    assert _state(folder) == before and not (folder / "model").exists()


def test_a_full_disk_while_simulating_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from tomocpt_scipion.engine import simulate

    calls = []

    def full_disk_on_the_second_file(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return io.write_mrc(*args, **kwargs)

    monkeypatch.setattr(simulate, "write_mrc", full_disk_on_the_second_file)
    status, err = _run(
        [
            "simulate",
            "--out",
            tmp_path / "sim",
            "--shape",
            "16",
            "32",
            "32",
            "--mode",
            "fourier",
            "--n-tomograms",
            "2",
            "--n-target",
            "2",
            "--n-distractors",
            "0",
        ],
        capsys,
    )
    assert status == 2 and err[-1].endswith("No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_resume_with_other_settings_names_them_and_changes_nothing(workspace, capsys):
    folder, diameter, _, _ = workspace
    assert _run(_train_argv(folder, diameter), capsys)[0] == 0
    before = _state(folder)
    status, err = _run(_train_argv(folder, diameter * 1.2, "tomo.mrc", "--resume", "--epochs", "2"), capsys)
    assert status == 2 and "last.pt: --resume with other settings" in err[-1]
    assert f"diameter_a {float(diameter)!r} → {float(diameter * 1.2)!r}" in err[-1]
    status, err = _run(_train_argv(folder, diameter, "tomo.mrc", "--resume", "--model-size", "default"), capsys)
    assert status == 2 and "model_size 'small' → 'default'" in err[-1]
    assert _state(folder) == before


def test_resume_with_more_epochs_continues(workspace, capsys):
    folder, diameter, _, _ = workspace
    assert _run(_train_argv(folder, diameter), capsys)[0] == 0
    status, _ = _run(_train_argv(folder, diameter, "tomo.mrc", "--resume", "--epochs", "2"), capsys)
    assert status == 0 and len((folder / "model" / "training_log.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize("content", [b"garbage" * 100, b""])
def test_resume_from_a_corrupt_state_is_one_line(workspace, capsys, content):
    folder, diameter, _, _ = workspace
    (folder / "model").mkdir()
    (folder / "model" / "last.pt").write_bytes(content)
    before = _state(folder)
    status, err = _run(_train_argv(folder, diameter, "tomo.mrc", "--resume"), capsys)
    assert status == 2 and len(err) == 1 and "last.pt: not a readable training state" in err[0]
    assert _state(folder) == before


def test_an_interrupted_training_says_after_which_epoch_and_how_to_resume(workspace, capsys, monkeypatch):
    folder, diameter, _, _ = workspace
    from tomocpt_scipion.engine import train

    real_write_log = train._write_log

    def interrupt_after_the_first_epoch(out_dir, history):
        real_write_log(out_dir, history)
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_write_log", interrupt_after_the_first_epoch)
    status, err = _run(_train_argv(folder, diameter, "tomo.mrc", "--epochs", "3"), capsys)
    assert status == 130 and err[-1].startswith("tomocpt-engine train: interrupted after epoch 1; resume with --resume")
    assert (folder / "model" / "last.pt").exists() and not (folder / "model" / "model.pt").exists()


def test_inspect_refuses_a_checkpoint_whose_weights_do_not_fit_its_config(tmp_path, trained_model, capsys):
    import torch

    payload = torch.load(trained_model, weights_only=True)
    payload["config"]["model_size"] = "default"
    torch.save(payload, tmp_path / "mismatch.pt")
    status, err = _run(["inspect", tmp_path / "mismatch.pt"], capsys)
    assert status == 2 and len(err) == 1 and "mismatch.pt: its weights do not fit the network" in err[0]


def test_a_mask_of_another_shape_is_refused_and_a_binned_one_is_used(workspace, trained_model, capsys, caplog):
    folder, _, volume, pixel = workspace
    io.write_mrc(folder / "odd_mask.mrc", np.ones((20, 30, 64), np.float32), pixel)
    io.write_mrc(folder / "binned_mask.mrc", np.ones(tuple(n // 2 for n in volume.shape), np.float32), 2 * pixel)
    before = _state(folder)
    status, err = _run(_predict_argv(folder, trained_model, "--masks", folder / "odd_mask.mrc"), capsys)
    assert status == 2 and "odd_mask.mrc: mask of shape (z, y, x) (20, 30, 64) does not cover" in err[-1]
    assert _state(folder) == before
    with caplog.at_level("INFO"):
        status, _ = _run(_predict_argv(folder, trained_model, "--masks", folder / "binned_mask.mrc"), capsys)
    assert status == 0 and "binned_mask.mrc: mask binned 2 ×" in caplog.text


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("nan.txt", "10 20 10\nnan 5 5\n", "nan.txt: 1 coordinate(s) are not finite numbers; the first is particle 2"),
        ("text.txt", "10 20 10\n12 abc 5\n", "text.txt: line 2, column 2: 'abc' is not a number."),
        ("text.csv", "tomo_name,x,y,z\ntomo,10,20,10\ntomo,abc,5,5\n", "text.csv: line 3, column 'x': 'abc' is not"),
        ("garbage.mod", b"\x00\x01garbage" * 40, "garbage.mod: not an IMOD model"),
        ("truncated.mod", b"IMODV1.2" + b"\x00" * 20, "truncated.mod: not a readable IMOD model"),
        (
            "no_end_marker.mod",
            b"IMODV1.2" + b"\x00" * 232 + b"\x00\x01garbage" * 40,
            "no_end_marker.mod: not a readable IMOD model (the file ends inside a chunk",
        ),
    ],
)
def test_a_bad_coordinate_file_is_named_with_the_row(workspace, capsys, name, content, message):
    folder, diameter, _, _ = workspace
    path = folder / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    before = _state(folder)
    status, err = _run(
        [
            "train",
            "--tomograms",
            folder / "tomo.mrc",
            "--coordinates",
            path,
            "--diameter",
            diameter,
            "--epochs",
            "1",
            "--out",
            folder / "model",
        ],
        capsys,
    )
    assert status == 2 and len(err) == 1 and message in err[0]
    assert _state(folder) == before


def test_the_same_tomogram_twice_is_refused(workspace, trained_model, capsys):
    folder, diameter, _, _ = workspace
    before = _state(folder)
    status, err = _run(
        [
            "predict",
            "--model",
            trained_model,
            "--tomograms",
            folder / "tomo.mrc",
            folder / "tomo.mrc",
            "--out",
            folder / "picks",
        ],
        capsys,
    )
    assert status == 2 and err[-1].endswith("tomo.mrc is given twice")
    status, err = _run(
        _train_argv(
            folder,
            diameter,
            "tomo.mrc",
            "--val-tomograms",
            folder / "tomo.mrc",
            "--val-coordinates",
            folder / "tomo.txt",
        ),
        capsys,
    )
    assert status == 2 and "--tomograms and --val-tomograms" in err[-1] and "given twice" in err[-1]
    assert _state(folder) == before


def test_validation_tomograms_without_coordinates_are_refused(workspace, capsys):
    folder, diameter, _, _ = workspace
    status, err = _run(_train_argv(folder, diameter, "tomo.mrc", "--val-tomograms", folder / "other.mrc"), capsys)
    assert status == 2 and "--val-tomograms needs --val-coordinates too" in err[-1]


def test_tomograms_of_different_pixel_sizes_are_named(workspace, trained_model, capsys):
    folder, _, volume, pixel = workspace
    io.write_mrc(folder / "finer.mrc", np.array(volume), pixel / 2)
    status, err = _run(
        [
            "predict",
            "--model",
            trained_model,
            "--tomograms",
            folder / "tomo.mrc",
            folder / "finer.mrc",
            "--out",
            folder / "picks",
        ],
        capsys,
    )
    assert status == 2 and "different pixel sizes" in err[-1] and "finer.mrc" in err[-1] and "tomo.mrc" in err[-1]


@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_predict_on_a_constant_or_nan_tomogram_names_it(workspace, trained_model, capsys, fill):
    folder, _, volume, pixel = workspace
    io.write_mrc(folder / "flat.mrc", np.full(volume.shape, fill, np.float32), pixel)
    before = _state(folder)
    status, err = _run(
        [
            "predict",
            "--model",
            trained_model,
            "--tomograms",
            folder / "flat.mrc",
            "--out",
            folder / "picks",
            "--no-tta",
        ],
        capsys,
    )
    assert status == 2 and len(err) == 1 and "flat.mrc: " in err[0]
    assert _state(folder) == before and not (folder / "picks").exists()


def test_export_star_to_star_keeps_the_optics_pixel_size(tmp_path, capsys):
    table = io.coordinate_table(np.array([[1.0, 2.0, 3.0]]), "tomo")
    io.write_coordinates(tmp_path / "in.star", table, pixel_size_a=13.5)
    assert _run(["export", tmp_path / "in.star", tmp_path / "out.star"], capsys)[0] == 0
    assert io.coordinate_pixel_size(tmp_path / "out.star") == 13.5


def test_export_to_relion5_without_tomogram_sizes_names_the_destination(tmp_path, capsys):
    table = io.coordinate_table(np.array([[1.0, 2.0, 3.0]]), "tomo")
    io.write_coordinates(tmp_path / "in.star", table, pixel_size_a=13.5)
    before = _state(tmp_path)
    status, err = _run(["export", tmp_path / "in.star", tmp_path / "out.star", "--relion", "5"], capsys)
    assert status == 2 and str(tmp_path / "out.star") + ": RELION 5" in err[-1] and ".part" not in err[-1]
    assert _state(tmp_path) == before


@pytest.mark.parametrize("with_tomograms", [True, False])
def test_evaluate_refuses_a_diameter_no_tomogram_could_hold(workspace, capsys, with_tomograms):
    folder, _, _, pixel = workspace
    geometry = ["--tomograms", folder / "tomo.mrc"] if with_tomograms else ["--pixel-size", pixel]
    before = _state(folder)
    status, err = _run(
        [
            "evaluate",
            "--picks",
            folder / "tomo.txt",
            "--truth",
            folder / "tomo.txt",
            "--diameter",
            "1e12",
            *geometry,
            "--out",
            folder / "evaluation",
        ],
        capsys,
    )
    assert status == 2 and len(err) == 1 and "a particle of 1e+12 Å" in err[0]
    assert ("tomo.mrc: " in err[0]) == with_tomograms
    assert _state(folder) == before


def test_an_output_folder_that_cannot_be_made_is_one_line_naming_it(workspace, trained_model, capsys):
    folder, _, _, _ = workspace
    (folder / "a_file").write_text("not a folder\n")
    before = _state(folder)
    status, err = _run(
        [
            "predict",
            "--model",
            trained_model,
            "--tomograms",
            folder / "tomo.mrc",
            "--out",
            folder / "a_file" / "picks",
            "--no-tta",
        ],
        capsys,
    )
    assert status == 2 and len(err) == 1 and str(folder / "a_file" / "picks") in err[0] and ".part" not in err[0]
    assert _state(folder) == before


def test_resume_refuses_a_state_file_that_would_run_code(workspace, capsys):
    import pickle

    folder, diameter, _, _ = workspace
    marker = folder / "pwned"

    class Hostile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "model").mkdir()
    (folder / "model" / "last.pt").write_bytes(pickle.dumps({"state": Hostile()}))
    before = _state(folder)
    status, err = _run(_train_argv(folder, diameter, "tomo.mrc", "--resume"), capsys)
    assert status == 2 and len(err) == 1 and "last.pt: not a readable training state" in err[0]
    assert not marker.exists() and _state(folder) == before
