"""Speed and memory of the engine, with the references measured in the same run.

    .venv/bin/python benchmarks/speed.py                 # full table on this machine (CPU or GPU)
    .venv/bin/python benchmarks/speed.py --gpu           # the GPU table (needs CUDA): 100 training steps
    .venv/bin/python benchmarks/speed.py --quick         # smallest sizes: the smoke test
    .venv/bin/python benchmarks/speed.py --tables quota  # some tables only (speed_quota.md)

Each table is printed as soon as it is measured; every measurement runs in its own process
(its peak memory is its own) and is reported as timed out past ``--budget`` seconds.

1. training: first step, a step on a new (shorter) batch shape, and steady patches/s of every
   backbone at 64³ (and ResUNet small at 32³), next to MONAI's ``BasicUNet`` in eager fp32;
   and the same ResUNet small next to the engine of ``PREVIOUS_COMMIT``, without and (where a
   control group can be made: root, cgroup CPU controller) under a CPU quota of one core,
   as containers and cluster schedulers impose one, idle and with a neighbour process busy
   on one core (a shared node) (CPU runs only);
2. inference voxels/s of every backbone, one pass: our batched sliding window next to a plain
   (batch 1, fp32) MONAI sliding window;
3. each peak method on a planted 200 × 512 × 512 score map with 3000 particles, next to
   ``skimage.feature.peak_local_max``, this engine's previous release and DeepETPicker's
   MP-NMS + de_dup (``peak_references.py``);
4. end-to-end ``tomocpt-engine predict --no-tta`` time and peak RSS per tomogram size
   (10 Å/px, ribosomes, rescaled as a user would: particle → 10 px);
5. peak RSS of rescaling + normalising a memory-mapped 1000 × 1000 × 400 float32 tomogram,
   as a multiple of its size (target: < 3).

Writes ``speed.csv`` and ``speed.md`` (``speed_gpu.*`` with ``--gpu``) in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tomocpt_scipion.engine.specs import BACKBONES, RECIPE_SPECS

sys.path.insert(0, str(Path(__file__).parent))
RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).resolve().parents[1]
SIZES = {"256x256x128": (128, 256, 256), "512x512x200": (200, 512, 512), "1024x1024x400": (400, 1024, 1024)}
QUICK_SIZES = {"96x96x48": (48, 96, 96)}
PIXEL_SIZE_A = 10.0
#: the CPU quota (cores) of the quota table, and the control group that sets it
QUOTA_CPUS = 1.0
QUOTA_CGROUP = "tomocpt-speed-quota"
#: the recipe that uses each backbone
RECIPE_OF_BACKBONE = {spec.backbone: name for name, spec in RECIPE_SPECS.items()}


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(argv: list[str], budget_s: float, cgroup: Path | None = None) -> dict:
    """Run one measurement in a fresh process so its peak memory is its own (inside the control
    group ``cgroup`` when given); past ``budget_s`` seconds it is stopped and reported as timed out."""

    def join_cgroup() -> None:
        members = "cgroup.procs" if (cgroup / "cgroup.procs").exists() else "tasks"
        (cgroup / members).write_text(str(os.getpid()))

    try:
        result = subprocess.run(
            [sys.executable, __file__, "--worker", *argv],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=budget_s,
            preexec_fn=join_cgroup if cgroup else None,
        )
    except subprocess.TimeoutExpired:
        print(f"  {argv[0]} {argv[1]}: timed out after {budget_s:.0f} s", flush=True)
        return {"timed_out": True}
    if result.returncode:
        raise RuntimeError(f"worker {argv} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _quota_cgroup(cpus: float) -> Path | None:
    """A control group whose CFS quota is ``cpus`` cores, as containers and cluster schedulers
    set one; None where none can be made (it needs root and a cgroup file system with the CPU
    controller)."""
    from tomocpt_scipion.engine.threads import cgroup_cpu_mounts

    for version, _, mount_point in cgroup_cpu_mounts():
        group = mount_point / QUOTA_CGROUP
        try:
            group.mkdir(exist_ok=True)
            if version == "v2":
                (group / "cpu.max").write_text(f"{round(cpus * 100_000)} 100000")
            else:
                (group / "cpu.cfs_period_us").write_text("100000")
                (group / "cpu.cfs_quota_us").write_text(str(round(cpus * 100_000)))
        except OSError:
            continue
        return group
    return None


# ----------------------------------------------------------------------------- workers
def _train_worker(
    backbone: str,
    size: str,
    patch: int,
    batch: int,
    steps: int,
    layout: str = "engine",
    threads: str = "engine",
    engine: str | None = None,
) -> dict:
    """Training steps of one backbone (``reference``: MONAI's BasicUNet, eager fp32) on random patches.

    ``layout`` ``contiguous`` keeps the default memory layout and fp32 (what the engine did
    before it chose channels-last and mixed precision). ``threads`` ``engine`` lets the engine
    choose torch's CPU threads (:func:`.threads.limit_threads`), ``visible`` keeps torch's
    default of one per visible core. ``engine``: the folder of a previous release's package to
    import instead of this one (see ``peak_references.previous_engine_tree``).

    Reports the first step (kernel set-up), a step on a new batch shape after warm-up (a short
    last batch), and the steady throughput.
    """
    if engine:  # this module imported the current package already: forget it
        sys.path.insert(0, engine)
        for name in [m for m in sys.modules if m.split(".")[0] == "tomocpt_scipion"]:
            del sys.modules[name]
    if threads == "engine":
        from tomocpt_scipion.engine.threads import limit_threads

        limit_threads()
    import torch

    from tomocpt_scipion.engine.losses import DiceLoss
    from tomocpt_scipion.engine.models import build_model

    device = _device()
    reference = backbone == "reference"
    placed = layout == "engine" and not reference
    if reference:
        from monai.networks.nets import BasicUNet

        model = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2).to(device)
    else:
        model = build_model(backbone, 2, size)
    if placed:
        from tomocpt_scipion.engine.device import autocast, place_batch, place_model

        model = place_model(model, backbone, device)
    else:
        model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    loss_fn = DiceLoss()

    def step(n: int) -> float:
        image = torch.randn(n, 1, patch, patch, patch)
        image = place_batch(image, backbone, device) if placed else image.to(device)
        target = (torch.rand(n, 1, patch, patch, patch, device=device) > 0.9).float()
        started = time.perf_counter()
        with autocast(device) if placed else torch.autocast(device.type, enabled=False):
            loss = loss_fn(model(image).float(), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    first = step(batch)
    step(batch)
    new_shape = step(max(1, batch - 1))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = sum(step(batch) for _ in range(steps))
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return {
        "patches_per_s": steps * batch / seconds,
        "first_step_s": first,
        "new_shape_step_s": new_shape,
        "seconds_per_100_steps": 100 * seconds / steps,
        "peak_rss_mb": _peak_rss_mb(),
        "gpu_mb": gpu,
        "torch_threads": torch.get_num_threads(),
    }


def _volume(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _infer_worker(backbone: str, shape, batch: int, reference: bool) -> dict:
    import torch

    from tomocpt_scipion.engine.config import recipe_config
    from tomocpt_scipion.engine.device import place_batch, place_model
    from tomocpt_scipion.engine.infer import run_network
    from tomocpt_scipion.engine.models import build_model

    device = _device()
    config = recipe_config("tomocpt", diameter_a=300.0, backbone=backbone, model_size="default")
    model = build_model(backbone, config.out_channels, "default")
    # the reference runs the network as MONAI gives it; ours in the layout the engine uses
    model = (model.to(device) if reference else place_model(model, backbone, device)).eval()
    volume = _volume(shape)
    warm_up = torch.zeros(1, 1, *(config.patch_size,) * 3)
    with torch.inference_mode():  # warm-up: first-call initialisation is not throughput
        model(warm_up.to(device) if reference else place_batch(warm_up, backbone, device))
    started = time.perf_counter()
    if reference:  # plain: one patch at a time, fp32, MONAI's sliding window
        from monai.inferers import sliding_window_inference

        with torch.inference_mode():
            sliding_window_inference(
                torch.from_numpy(volume)[None, None].to(device),
                config.patch_size,
                1,
                model,
                overlap=0.5,
                mode="gaussian",
            )
    else:
        run_network(model, config, volume, device, batch_size=batch, tta=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"voxels_per_s": volume.size / (time.perf_counter() - started), "peak_rss_mb": _peak_rss_mb()}


def _big_tomogram_path(shape, folder) -> Path:
    return Path(folder) / f"noise_{'x'.join(map(str, shape[::-1]))}.mrc"


def _tomogram_path(shape, folder) -> Path:
    return Path(folder) / f"tomo_{'x'.join(map(str, shape[::-1]))}.mrc"


def _checkpoint_path(backbone, folder) -> Path:
    return Path(folder) / f"{backbone}_untrained.pt"


def _inputs_worker(shape, folder: str, backbone: str, noise: bool = False) -> dict:
    """Write the inputs of the measurements (in their own process, so they do not count):
    a simulated tomogram (ribosomes at 10 Å/px; noise above 60 M voxels, where the
    simulator's FFTs would dominate), a memory-mapped noise tomogram, an untrained checkpoint."""
    import mrcfile
    import torch

    from tomocpt_scipion.engine.checkpoint import save_checkpoint
    from tomocpt_scipion.engine.config import recipe_config
    from tomocpt_scipion.engine.io import write_mrc
    from tomocpt_scipion.engine.models import build_model
    from tomocpt_scipion.engine.simulate import SimulationConfig, simulate_tomogram, species_diameter_a

    diameter = species_diameter_a("4v94", PIXEL_SIZE_A)
    checkpoint = _checkpoint_path(backbone, folder)
    if not checkpoint.exists():
        recipe = RECIPE_OF_BACKBONE[backbone]
        config = recipe_config(recipe, diameter_a=diameter, expected_particles=100)
        config.voxel_size_a = diameter / config.target_diameter_px
        torch.manual_seed(0)
        save_checkpoint(checkpoint, build_model(backbone, config.out_channels, "default"), config, 0, 0.0)
    tomogram = _tomogram_path(shape, folder)
    if not noise and not tomogram.exists() and np.prod(shape) <= 60e6:
        volume = simulate_tomogram(
            SimulationConfig(
                shape_zyx=tuple(shape), pixel_size_a=PIXEL_SIZE_A, n_target=int(np.prod(shape) / 4e5), n_distractors=0
            ),
            1,
        ).volume
        write_mrc(tomogram, volume, PIXEL_SIZE_A)
    noise_path = _big_tomogram_path(shape, folder)
    if not noise_path.exists() and (noise or np.prod(shape) > 60e6):
        partial = noise_path.with_suffix(".part")
        with mrcfile.new_mmap(partial, shape=tuple(shape), mrc_mode=2, overwrite=True) as mrc:
            rng = np.random.default_rng(0)
            for z in range(shape[0]):
                mrc.data[z] = rng.normal(size=shape[1:]).astype(np.float32)
            mrc.voxel_size = PIXEL_SIZE_A
        partial.rename(noise_path)
    return {"diameter_a": diameter}


def _memory_worker(shape, zoom: float, folder: str) -> dict:
    from tomocpt_scipion.engine.io import read_mrc
    from tomocpt_scipion.engine.preprocess import normalise_volume, rescale_volume

    baseline = _peak_rss_mb()
    data, _ = read_mrc(_big_tomogram_path(shape, folder))
    started = time.perf_counter()
    normalise_volume(rescale_volume(data, zoom), "robust", in_place=True)
    size_mb = data.nbytes / 2**20
    peak = _peak_rss_mb()
    return {
        "size_mb": size_mb,
        "baseline_mb": baseline,
        "peak_rss_mb": peak,
        "peak_over_size": peak / size_mb,
        "added_over_size": (peak - baseline) / size_mb,
        "seconds": time.perf_counter() - started,
    }


def _predict_worker(shape, folder: str, backbone: str) -> dict:
    """End-to-end ``tomocpt-engine predict`` of one tomogram with a default-size network."""
    from tomocpt_scipion.engine.cli import main

    tomogram = _tomogram_path(shape, folder)
    tomogram = tomogram if tomogram.exists() else _big_tomogram_path(shape, folder)
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    status = main(
        [
            "predict",
            "--model",
            str(_checkpoint_path(backbone, folder)),
            "--tomograms",
            str(tomogram),
            "--out",
            str(Path(folder) / f"picks_{backbone}_{tomogram.stem}"),
            "--overwrite",
            "--threshold",
            "0.5",
            "--no-tta",
        ]
    )
    assert status == 0
    size_mb = tomogram.stat().st_size / 2**20
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": _peak_rss_mb(),
        "tomogram_mb": size_mb,
        "added_over_tomogram": (_peak_rss_mb() - baseline) / size_mb,
    }


def _peaks_rows(shape, n_particles: int) -> list[dict]:
    """Each peak method on a planted score map, next to peak_local_max, this engine's previous
    release and DeepETPicker's own MP-NMS + de_dup (see ``peak_references.py``)."""
    from peak_references import PREVIOUS_COMMIT, deepetpicker_mp_nms, previous_engine_peaks
    from skimage.feature import peak_local_max

    from tomocpt_scipion.engine.labels import gaussian
    from tomocpt_scipion.engine.peaks import find_peaks

    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1, (n_particles, 3)) * (np.array(shape[::-1]) - 1)
    scores = np.maximum(gaussian(shape, centres, 5.0), rng.uniform(0, 0.2, shape).astype(np.float32))
    device = _device()

    def timed(function):
        started = time.perf_counter()
        picks = function()
        if device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        return time.perf_counter() - started, len(picks)

    reference_s, reference_n = timed(
        lambda: peak_local_max(scores, min_distance=5, threshold_abs=0.3, exclude_border=False)
    )
    rows = [{"method": "skimage peak_local_max (reference)", "seconds": reference_s, "picks": reference_n}]
    for method in ("local-max", "mp-nms", "greedy"):
        seconds, n = timed(
            lambda m=method: find_peaks(scores, m, radius_px=5.0, threshold=0.3, refine="none", device=device)
        )
        rows.append({"method": method, "seconds": seconds, "picks": n})
    previous = previous_engine_peaks()
    if previous is not None:
        for method in ("local-max", "greedy"):
            seconds, n = timed(lambda m=method: previous.find_peaks(scores, m, radius_px=5.0, threshold=0.3))
            rows.append({"method": f"{method}, engine {PREVIOUS_COMMIT} (before)", "seconds": seconds, "picks": n})
    seconds, n = timed(lambda: deepetpicker_mp_nms(scores, 5.0, 0.3, 10.0, device))
    rows.append({"method": "DeepETPicker MP-NMS + de_dup (re-implemented)", "seconds": seconds, "picks": n})
    for row in rows:
        row["speed_up_over_peak_local_max"] = reference_s / row["seconds"]
    return rows


@dataclass
class _Run:
    """What every table needs: print-and-keep a table, measure in a worker, the options."""

    emit: Callable[[str, list[dict]], None]
    measure: Callable[..., dict]
    quick: bool
    gpu: bool
    scratch: Path

    @property
    def steps(self) -> int:
        return 2 if self.quick else (100 if self.gpu else 5)


def _training_table(run: _Run) -> None:
    settings = (
        [("reference", "default", 32, 2, "engine"), ("resunet", "small", 32, 2, "engine")]
        if run.quick
        else [
            *((b, "default", 64, 2, "engine") for b in ("reference", *BACKBONES)),
            ("reference", "default", 32, 4, "engine"),
            ("resunet", "small", 32, 4, "contiguous"),
            ("resunet", "small", 32, 4, "engine"),
        ]
    )
    rows = [
        {
            "backbone": b,
            "size": size,
            "patch": patch,
            "batch": batch,
            "layout": layout,
            **run.measure("train", backbone=b, size=size, patch=patch, batch=batch, steps=run.steps, layout=layout),
        }
        for b, size, patch, batch, layout in settings
    ]
    for row in rows:
        same = [
            r
            for r in rows
            if r["backbone"] == "reference" and r["patch"] == row["patch"] and r["batch"] == row["batch"]
        ]
        row["ratio_to_reference"] = (
            row.get("patches_per_s", np.nan) / same[0].get("patches_per_s", np.nan) if same else np.nan
        )
    run.emit("Training throughput (reference = MONAI BasicUNet, eager fp32)", rows)


def _inference_table(run: _Run) -> None:
    infer_shape = (32, 64, 64) if run.quick else (60, 154, 154)  # 512 x 512 x 200 at 10 Å/px, rescaled x0.3
    rows = []
    for b in ("resunet",) if run.quick else BACKBONES:
        ours = run.measure("infer", backbone=b, shape=infer_shape, batch=4, reference=False)
        plain = run.measure("infer", backbone=b, shape=infer_shape, batch=1, reference=True)
        rows.append(
            {
                "backbone": b,
                "voxels_per_s": ours.get("voxels_per_s"),
                "reference_voxels_per_s": plain.get("voxels_per_s"),
                "speed_ratio": ours.get("voxels_per_s", np.nan) / plain.get("voxels_per_s", np.nan),
                "peak_rss_mb": ours.get("peak_rss_mb"),
            }
        )
    run.emit(
        f"Inference at the training scale ({'x'.join(map(str, infer_shape[::-1]))} voxels, one pass; "
        "reference = plain MONAI sliding window, batch 1, fp32)",
        rows,
    )


def _peaks_table(run: _Run) -> None:
    peak_shape, n_particles = ((32, 64, 64), 20) if run.quick else ((200, 512, 512), 3000)
    run.emit(
        f"Peak extraction on a planted {'x'.join(map(str, peak_shape[::-1]))} score map ({n_particles} particles)",
        _peaks_rows(peak_shape, n_particles),
    )


def _predict_table(run: _Run) -> None:
    rows = []
    for name, shape in (QUICK_SIZES if run.quick else SIZES).items():
        for b in ("resunet",) if run.quick else ("resunet", "multiresunet"):
            inputs = {"shape": shape, "folder": str(run.scratch), "backbone": b}
            run.measure("inputs", **inputs)
            rows.append({"tomogram": name, "backbone": b, **run.measure("predict", **inputs)})
    run.emit("End-to-end predict per tomogram, one pass (10 Å/px, particle 332 Å → rescaled ×0.3)", rows)


def _memory_table(run: _Run) -> None:
    memory_shape = (40, 100, 100) if run.quick else (400, 1000, 1000)
    run.measure("inputs", shape=memory_shape, folder=str(run.scratch), backbone="resunet", noise=True)
    run.emit(
        f"Peak RSS, memory-mapped {'x'.join(map(str, memory_shape[::-1]))} float32 tomogram",
        [
            {
                "operation": f"rescale ×{zoom} + robust normalisation",
                **run.measure("memory", shape=memory_shape, zoom=zoom, folder=str(run.scratch)),
            }
            for zoom in (0.3, 1.0)
        ],
    )


@contextlib.contextmanager
def _busy_neighbour(busy: bool):
    """A process outside the measured one that keeps one core busy, as another job on a shared
    node does (nothing when ``busy`` is False)."""
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        yield
    finally:
        if neighbour:
            neighbour.kill()
            neighbour.wait()


def _quota_table(run: _Run) -> None:
    """ResUNet small training, the engine of ``PREVIOUS_COMMIT`` with torch's default threads
    (one per visible core) next to this one, whose threads follow the CPU quota: without a
    quota; under a quota of :data:`QUOTA_CPUS` core(s), as containers and cluster schedulers
    set one; and under that quota while a neighbour process keeps one core busy, as on a
    shared node. The quota rows are skipped, with a line saying why, where no control group
    can be made."""
    from peak_references import PREVIOUS_COMMIT, previous_engine_tree

    previous = previous_engine_tree(run.scratch)
    if previous is None:
        print("Training, before and after: skipped, no git history\n", flush=True)
        return
    engines = {
        f"engine {PREVIOUS_COMMIT} (torch's default threads)": dict(
            layout="contiguous", threads="visible", engine=str(previous)
        ),
        "this engine": dict(layout="engine", threads="engine"),
    }
    cgroup = _quota_cgroup(QUOTA_CPUS)
    conditions = [("none", None, False)]
    if cgroup is None:
        print(f"CPU quota of {QUOTA_CPUS:g} core: skipped, no control group could be made (needs root)", flush=True)
    else:
        quota = f"{QUOTA_CPUS:g} core"
        conditions += [(quota, cgroup, False), (f"{quota}, a neighbour busy on one core", cgroup, True)]
    rows = []
    for condition, group, busy in conditions:
        before = None
        for name, values in engines.items():
            with _busy_neighbour(busy):
                measured = run.measure(
                    "train", group, backbone="resunet", size="small", patch=32, batch=4, steps=run.steps, **values
                )
            row = {"cpu_quota": condition, "engine": name, **measured}
            before = before or row
            row["ratio_to_previous"] = row.get("patches_per_s", np.nan) / before.get("patches_per_s", np.nan)
            rows.append(row)
    if cgroup:
        cgroup.rmdir()
    title = "ResUNet small training (32³, batch 4), before and after, with and without a CPU quota"
    run.emit(f"{title} ({os.cpu_count()} cores)", rows)


#: the tables, in the order they run (``--tables`` picks some; ``quota`` is CPU only)
TABLES = {
    "training": _training_table,
    "quota": _quota_table,
    "inference": _inference_table,
    "peaks": _peaks_table,
    "predict": _predict_table,
    "memory": _memory_table,
}


# ----------------------------------------------------------------------------- report
def _markdown(table: pd.DataFrame) -> str:
    columns = list(table.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smallest sizes only (smoke test)")
    parser.add_argument(
        "--gpu", action="store_true", help="the GPU table: needs CUDA; 100 training steps per backbone, GPU memory"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=900.0,
        help="seconds one measurement may take before it is reported as timed out (default 900)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument(
        "--tables",
        nargs="+",
        choices=list(TABLES),
        default=list(TABLES),
        help="measure only these tables (default all); results go to speed_<tables>.md",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        values = json.loads(rest[0])
        result = {
            "train": _train_worker,
            "infer": _infer_worker,
            "memory": _memory_worker,
            "predict": _predict_worker,
            "inputs": _inputs_worker,
        }[kind](**values)
        print(json.dumps(result))
        return 0
    import torch

    if args.gpu and not torch.cuda.is_available():
        print("speed.py --gpu: no CUDA device here; run it where there is one.", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / "scratch"
    scratch.mkdir(exist_ok=True)
    hardware = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}"
    )
    print(f"Hardware: {hardware}\n", flush=True)
    sections = []
    suffix = ("_gpu" if args.gpu else "") + ("" if args.tables == list(TABLES) else "_" + "_".join(args.tables))

    def emit(title: str, rows: list[dict]) -> None:
        table = pd.DataFrame(rows)
        sections.append((title, table))
        print(f"{title}\n{table.to_string(index=False)}\n", flush=True)

    def measure(kind: str, cgroup: Path | None = None, **values) -> dict:
        return _worker([kind, json.dumps(values)], args.budget, cgroup)

    run = _Run(emit, measure, args.quick, args.gpu, scratch)
    for name in args.tables:
        if name == "quota" and args.gpu:
            continue
        TABLES[name](run)

    if not sections:
        print("No table could be measured here.")
        return 0
    report = [f"Hardware: {hardware}", ""]
    for title, table in sections:
        report += [f"### {title}", "", _markdown(table), ""]
    (out / f"speed{suffix}.md").write_text("\n".join(report))
    pd.concat([t.assign(section=title) for title, t in sections]).to_csv(out / f"speed{suffix}.csv", index=False)
    print(f"Wrote {out / f'speed{suffix}.md'} and {out / f'speed{suffix}.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
