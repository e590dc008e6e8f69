"""The command line, run as users run it: ``python -m xpmlp ...`` in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpmlp.io import load as load_network
from xpmlp.progress import ProgressBar

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def xpmlp(
    command: str, cwd: Path, hide: tuple[str, ...] = (), stdin: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m xpmlp <command>`` in ``cwd``; ``hide`` names packages made unimportable,
    ``stdin`` is piped in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPMLP_")}
    path = [str(ROOT)]
    if hide:
        shim = cwd / "_hidden"
        for name in hide:
            (shim / name).mkdir(parents=True, exist_ok=True)
            (shim / name / "__init__.py").write_text(
                f"raise ModuleNotFoundError({f'No module named {name!r}'!r}, name={name!r})\n"
            )
        path.insert(0, str(shim))
    env["PYTHONPATH"] = os.pathsep.join([*path, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "xpmlp", *shlex.split(command)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def ok(command: str, cwd: Path, *, quiet: bool = True, **kw) -> str:
    """Standard output of a successful run; ``quiet``: nothing on standard error either (no
    progress bar off a terminal)."""
    r = xpmlp(command, cwd=cwd, **kw)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    if quiet:
        assert r.stderr == ""
    return r.stdout


def write_csv(path: Path, header: list[str], columns: list) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(zip(*columns))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """160 rows: numeric features a, b; a regression target y; labels 'kind' (3 strings)."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 160), rng.uniform(-1, 1, 160)
    y = np.round(a - 2 * b + 0.5 * a * b, 4)
    kind = np.where(a > 0.3, "cat", np.where(b > 0, "dog", "bird"))
    return write_csv(tmp_path / "data.csv", ["a", "b", "y", "kind"], [a, b, y, kind])


def read_column(path: Path, name: str) -> list[str]:
    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


# ------------------------------------------------------------------ train / predict / evaluate


def test_regression_csv_round_trip_train_save_predict_evaluate(tmp_path, data):
    out = ok(
        "train data.csv --target y --features a,b --epochs 60 --lr 0.01 --save reg.npz --quiet",
        cwd=tmp_path,
    )
    assert "held-out R^2" in out and "epoch" not in out  # --quiet: the summary only
    meta = json.loads((tmp_path / "reg.npz.cli.json").read_text())
    assert meta["task"] == "regression" and meta["feature_names"] == ["a", "b"]
    assert len(meta["x_mean"]) == 2 and len(meta["y_std"]) == 1

    ok("predict reg.npz data.csv --out preds.csv", cwd=tmp_path)
    pred = np.asarray(read_column(tmp_path / "preds.csv", "y"), dtype=float)
    true = np.asarray(read_column(data, "y"), dtype=float)
    assert pred.shape == (160,)
    assert 1 - np.sum((pred - true) ** 2) / np.sum((true - true.mean()) ** 2) > 0.95

    out = ok("evaluate reg.npz data.csv", cwd=tmp_path)
    r2 = float(out.split("R^2 ")[1].split(",")[0])
    assert r2 > 0.95


def test_classification_csv_round_trip_with_string_labels(tmp_path, data):
    out = ok(
        "train data.csv --target kind --features a,b --epochs 40 --lr 0.01 --save cls.npz",
        cwd=tmp_path,
    )
    assert "3 classes" in out
    losses = [
        float(line.split("loss ")[1].split()[0])
        for line in out.splitlines()
        if line.startswith("epoch")
    ]
    assert len(losses) >= 10 and losses[-1] < losses[0] / 2
    meta = json.loads((tmp_path / "cls.npz.cli.json").read_text())
    assert meta["classes"] == [["bird", "cat", "dog"]]
    assert load_network(tmp_path / "cls.npz").output.name == "softmax"

    stdout = ok("predict cls.npz data.csv", cwd=tmp_path)  # CSV on standard output
    pred = [row["kind"] for row in csv.DictReader(io.StringIO(stdout))]
    true = read_column(data, "kind")
    assert set(pred) <= {"bird", "cat", "dog"}
    assert np.mean(np.asarray(pred) == np.asarray(true)) > 0.9

    out = ok("evaluate cls.npz data.csv --target kind", cwd=tmp_path)
    assert float(out.split("accuracy ")[1].split()[0]) > 0.9


def test_few_valued_integer_target_is_classification_unless_told(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=80)
    write_csv(tmp_path / "d.csv", ["x", "t"], [x, (x > 0).astype(int)])
    ok("train d.csv --target t --epochs 2 --save c.npz", cwd=tmp_path)
    meta = json.loads((tmp_path / "c.npz.cli.json").read_text())
    assert meta["task"] == "classification" and meta["classes"] == [["0", "1"]]
    assert "output" not in meta and "onehot" not in meta  # the model knows them
    assert load_network(tmp_path / "c.npz").layer_sizes[-1] == 1  # one 0/1 output, not one-hot
    assert load_network(tmp_path / "c.npz").output.name == "logistic"
    ok("train d.csv --target t --task regression --epochs 2 --save r.npz", cwd=tmp_path)
    assert json.loads((tmp_path / "r.npz.cli.json").read_text())["task"] == "regression"


def test_a_missing_data_file_is_named_before_a_missing_target_option(tmp_path):
    line = assert_one_line_error(xpmlp("train nope.csv", cwd=tmp_path))
    assert line == "xpmlp: error: no such file: nope.csv"  # it had asked for --target


def test_a_constant_integer_target_is_refused_with_the_regression_hint(tmp_path):
    x = np.random.default_rng(1).normal(size=40)
    write_csv(tmp_path / "d.csv", ["x", "t"], [x, np.full(40, 3)])
    err = assert_one_line_error(xpmlp("train d.csv --target t --epochs 2", cwd=tmp_path))
    assert "single class ('3')" in err and "--task regression" in err
    ok("train d.csv --target t --task regression --epochs 2", cwd=tmp_path)


def test_npz_and_npy_tables(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    np.save(tmp_path / "d.npy", np.column_stack([X, X @ [1.0, -1.0, 0.5]]))
    ok("train d.npz --epochs 5 --save a.npz", cwd=tmp_path)
    assert "accuracy" in ok("evaluate a.npz d.npz", cwd=tmp_path)
    ok("train d.npy --epochs 5 --save b.npz", cwd=tmp_path)
    assert "R^2" in ok("evaluate b.npz d.npy", cwd=tmp_path)
    pred = ok("predict b.npz d.npy", cwd=tmp_path).splitlines()
    assert pred[0] == "y" and len(pred) == 61


def test_train_without_data_learns_digits_and_prints_the_loss_falling(tmp_path):
    out = ok("train --epochs 20 --plot curve.png", cwd=tmp_path)
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    losses = [float(line.split("loss ")[1].split()[0]) for line in epochs]
    assert len(epochs) == 20 and losses[-1] < losses[0] / 10
    accuracy = float(out.split("held-out accuracy ")[1].split()[0])
    assert accuracy > 0.9
    assert_png(tmp_path / "curve.png")


def test_train_without_scikit_learn_uses_the_shipped_synthetic_set(tmp_path):
    out = ok("train --epochs 30", cwd=tmp_path, hide=("sklearn",))
    assert out.startswith("spirals") and "held-out accuracy" in out


# ------------------------------------------------------------------ pictures and info


def assert_png(path: Path) -> tuple:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return image.shape


def test_demo_prints_four_losses_and_writes_a_png(tmp_path):
    out = ok("demo --epochs 400 --out fig.png --dpi 50", cwd=tmp_path)
    lines = [line for line in out.splitlines() if "final loss" in line]
    assert [line.split()[0] for line in lines] == ["x^2", "sin(pi", "|x|", "step"]
    assert all(float(line.split()[-1]) < 0.2 for line in lines)
    assert assert_png(tmp_path / "fig.png")[2] in (3, 4)


def test_demo_default_file_name(tmp_path):
    ok("demo --epochs 5 --dpi 30", cwd=tmp_path)
    assert_png(tmp_path / "xpmlp-demo.png")


def test_info_lists_versions_backends_devices_and_blas(tmp_path):
    import xpmlp

    out = ok("info", cwd=tmp_path, quiet=False)  # JAX may warn that it found no GPU
    assert out.startswith(f"xpmlp {xpmlp.__version__}\nPython ")
    for word in ("numpy", "cupy", "torch", "jax", "array_api_strict", "array_api_compat"):
        assert f"  {word} " in out
    assert "CUDA devices:" in out and "BLAS:" in out
    from xpmlp import _fast

    kernels = "with the compiled kernels" if _fast.KERNELS else "NumPy's ufuncs in place"
    assert f"NumPy fast path: on, {kernels}" in out  # what changes the last bits
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return
    for lib in threadpool_info():  # the kernel the BLAS chose for this CPU
        if lib.get("user_api") == "blas" and lib.get("architecture"):
            assert f"kernel {lib['architecture']}, " in out


# ------------------------------------------------------------------ bad input


BAD_INPUT = {
    "missing file": "train nope.csv --target y",
    "missing target column": "train data.csv --target price",
    "non-numeric features": "train data.csv --target y",  # 'kind' holds labels
    "CSV without --target": "train data.csv",
    "unknown activation": "train data.csv --target y --activation swish",
    "unknown solver": "train --solver lbfgs",
    "bad hidden sizes": "train --hidden 64,x",
    "negative epochs": "train --epochs -1",
    "unknown backend": "train --backend tensorflow",
    "numpy on a GPU": "train --device cuda",
    "unknown command": "fit",
    "model is not a model": "predict data.csv data.csv",
    "missing model": "evaluate none.npz data.csv",
}


@pytest.mark.parametrize("command", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_on_stderr_and_a_nonzero_exit(tmp_path, data, command):
    assert_one_line_error(xpmlp(command, cwd=tmp_path))


def assert_one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xpmlp: error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("options", "named"),
    [("--backend foo", "backend='foo'"), ("--device cuda:7", "device='cuda:7'")],
)
def test_predict_with_a_bad_backend_or_device_names_it_not_the_model(
    tmp_path, data, options, named
):
    ok("train data.csv --target y --features a,b --epochs 1 --save m.npz", cwd=tmp_path)
    line = assert_one_line_error(xpmlp(f"predict m.npz data.csv {options}", cwd=tmp_path))
    assert named in line and "m.npz" not in line


def test_backend_that_is_not_installed_names_the_fix(tmp_path):
    line = assert_one_line_error(xpmlp("train --backend cupy", cwd=tmp_path, hide=("cupy",)))
    assert "which is not installed here: pip install" in line


def test_a_broken_backend_is_not_called_not_installed(tmp_path):
    """An install that fails to import (an undefined symbol, a missing dependency) was
    reported as not installed, with the advice to install it."""
    shim = tmp_path / "broken" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('libtorch.so: undefined symbol: x')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPMLP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "broken"), str(ROOT)])
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "xpmlp", *a], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    out = run("info").stdout
    assert "  torch             libtorch.so: undefined symbol: x" in out
    line = assert_one_line_error(run("train", "--backend", "torch"))
    assert "the package 'torch' is installed but cannot be imported" in line
    assert "undefined symbol: x" in line


@pytest.mark.parametrize("command", ["demo", "train --epochs 1 --plot c.png"])
def test_pictures_without_matplotlib_name_the_extra(tmp_path, command):
    line = assert_one_line_error(xpmlp(command, cwd=tmp_path, hide=("matplotlib",)))
    assert 'pip install "xpmlp[plot]"' in line


def test_evaluate_with_a_class_the_model_never_saw(tmp_path, data):
    ok("train data.csv --target kind --features a,b --epochs 1 --save m.npz", cwd=tmp_path)
    rows = list(csv.reader(data.read_text().splitlines()))
    rows[1][3] = "fox"
    write_csv(tmp_path / "new.csv", rows[0], list(zip(*rows[1:])))
    line = assert_one_line_error(xpmlp("evaluate m.npz new.csv", cwd=tmp_path))
    assert "'fox'" in line


# ------------------------------------------------------------------ progress bar


def test_progress_bar_draws_epoch_loss_and_score_when_forced():
    stream = io.StringIO()
    with ProgressBar(3, file=stream, force=True) as bar:
        bar.update(0.5, 0.75)
        shown = str(bar._bar)
    assert "fit" in stream.getvalue()
    assert "1/3" in shown and "loss=0.5" in shown and "val=0.75" in shown


def test_off_a_terminal_progress_is_about_ten_lines_ending_at_the_last_epoch():
    stream = io.StringIO()
    with ProgressBar(25, file=stream) as bar:  # a StringIO is no terminal: lines, no bar
        for epoch in range(25):
            bar.update(1.0 / (epoch + 1), 0.5)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"fit: epoch {e}/25" for e in (3, 6, 9, 12, 15, 18, 21, 24, 25)
    ]
    assert lines[-1] == "fit: epoch 25/25, loss 0.04, val 0.5"


def test_off_a_terminal_an_early_stop_still_shows_its_last_epoch():
    stream = io.StringIO()
    with ProgressBar(100, file=stream) as bar:
        for _ in range(13):
            bar.update(0.25)
    assert stream.getvalue().splitlines() == [
        "fit: epoch 10/100, loss 0.25",
        "fit: epoch 13/100, loss 0.25",
    ]


@pytest.mark.parametrize("value", ["0", "off", "False", " no "])
def test_progress_is_silent_with_xpmlp_progress_0(monkeypatch, value):
    """As XPMLP_FAST and XPMLP_KERNELS: only '0' was taken."""
    monkeypatch.setenv("XPMLP_PROGRESS", value)
    stream = io.StringIO()
    with ProgressBar(3, file=stream, force=True) as bar:
        bar.update(0.5)
    assert stream.getvalue() == ""


def test_a_stream_that_cannot_be_written_ends_the_lines_not_the_fit(monkeypatch):
    """verbose=True into a closed pipe (BrokenPipeError) or a stream without flush made
    fit raise, its training lost."""
    import sys

    import xpmlp

    class WriteOnly:
        def __init__(self):
            self.text = []

        def write(self, s):
            self.text.append(s)

    class Closed:
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    x = np.linspace(-1, 1, 20)[:, None]
    for stream in (WriteOnly(), Closed()):
        monkeypatch.setattr(sys, "stderr", stream)
        net = xpmlp.MLP([1, 3, 1], seed=0)
        hist = net.fit(x, x**2, epochs=20, verbose=True)
        assert len(hist["loss"]) == 20 and net.state.epochs == 20


def test_verbose_fit_off_a_terminal_prints_lines(capsys):
    import xpmlp

    x = np.linspace(-1, 1, 20)[:, None]
    xpmlp.MLP([1, 3, 1], seed=0).fit(x, x**2, epochs=20, verbose=True)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 10 and err[-1].startswith("fit: epoch 20/20, loss ")


# ------------------------------------------------------------------ damaged or odd files


@pytest.fixture
def model(tmp_path, data) -> Path:
    """A regression model on features a, b of ``data``, with its sidecar."""
    ok("train data.csv --target y --features a,b --epochs 1 --save m.npz", cwd=tmp_path)
    return tmp_path / "m.npz"


def test_truncated_npz_data_is_one_line_naming_the_file(tmp_path, model):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "good.npz", X=rng.normal(size=(40, 2)), y=rng.normal(size=40))
    raw = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    for command in ("train cut.npz", "predict m.npz cut.npz"):
        line = assert_one_line_error(xpmlp(command, cwd=tmp_path))
        assert "cut.npz is not a readable .npz file (damaged or truncated?)" in line


SIDECARS = {
    "a JSON list": ("[1, 2]", "holds a JSON list; accepted: an object"),
    "not JSON": ("{not json", "is not valid JSON text"),
    "missing keys": ('{"task": "regression"}', "format is missing; accepted: 'xpmlp-cli'"),
    "x_mean too long": (
        lambda m: m.update(x_mean=[0.0] * 5),
        "x_mean is [0.0, 0.0, 0.0, 0.0, 0.0]; accepted: a list of 2 finite numbers",
    ),
    "zero x_std": (lambda m: m.update(x_std=[1.0, 0]), "x_std is [1.0, 0]; accepted: a list"),
    "unknown task": (lambda m: m.update(task="ranking"), "task is 'ranking'; accepted"),
    "classes for a regression model": (
        lambda m: m.update(task="classification", classes=[["a", "b", "c"]]),
        r"classes is [['a', 'b', 'c']]; accepted: 1 list(s) of 2 labels",
    ),
    "target names": (lambda m: m.update(target_names=[]), "target_names is []; accepted"),
}


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("name", list(SIDECARS))
def test_a_bad_sidecar_is_one_line_naming_the_file_and_the_field(tmp_path, model, name, command):
    content, message = SIDECARS[name]
    side = tmp_path / "m.npz.cli.json"
    if callable(content):
        meta = json.loads(side.read_text())
        content(meta)
        content = json.dumps(meta)
    side.write_text(content)
    line = assert_one_line_error(xpmlp(f"{command} m.npz data.csv", cwd=tmp_path))
    assert line.startswith("xpmlp: error: m.npz.cli.json") and message in line


@pytest.mark.parametrize("cell", ["nan", "NA", "inf", "?"])
def test_a_numeric_target_with_a_missing_cell_is_an_error_not_classes(tmp_path, data, cell):
    rows = list(csv.reader(data.read_text().splitlines()))
    rows[5][2] = cell  # column y, line 6 of the file
    write_csv(tmp_path / "gap.csv", rows[0], list(zip(*rows[1:])))
    line = assert_one_line_error(xpmlp("train gap.csv --target y --features a,b", cwd=tmp_path))
    assert f"target column 'y' of gap.csv holds {cell!r} on line 6" in line
    assert "a class of that name" not in line  # a column of numbers holds no class 'NA'


@pytest.mark.parametrize("cell", ["NA", "n/a", "None", "?"])
def test_a_label_column_with_a_missing_value_is_an_error_not_a_class(tmp_path, cell):
    x = np.linspace(-1, 1, 40)
    write_csv(tmp_path / "d.csv", ["x", "t"], [x, np.where(x > 0, "yes", "no")])
    rows = (tmp_path / "d.csv").read_text().splitlines()
    rows[3] = rows[3].rsplit(",", 1)[0] + f",{cell}"  # line 4 of the file
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    for command in ("train d.csv --target t", "train d.csv --target t --task classification"):
        line = assert_one_line_error(xpmlp(command, cwd=tmp_path))
        assert f"target column 't' of d.csv holds {cell!r} on line 4, a missing value" in line


def test_a_non_finite_target_array_names_the_file_and_the_array(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 2))
    np.savez(tmp_path / "d.npz", X=X, y=np.where(np.arange(20) == 3, np.nan, 1.0))
    np.save(tmp_path / "d.npy", np.column_stack([X, np.where(np.arange(20) == 4, np.inf, 1.0)]))
    for task in ("", "--task classification", "--task regression"):
        line = assert_one_line_error(xpmlp(f"train d.npz {task}", cwd=tmp_path))
        assert "d.npz: array 'y' holds nan in row 3" in line
    line = assert_one_line_error(xpmlp("train d.npy", cwd=tmp_path))
    assert "d.npy: the target (last) column holds inf in row 4" in line


NAMED = {
    "negative seed": ("train --seed -1", "argument --seed: '-1'; accepted: an int >= 0"),
    "demo seed": ("demo --seed x", "argument --seed: 'x'; accepted: an int >= 0"),
    "save into a missing folder": ("train --save no/m.npz", "argument --save: 'no/m.npz'"),
    "plot into a missing folder": ("train --plot no/c.png", "argument --plot: 'no/c.png'"),
    "demo into a missing folder": ("demo --out no/d.png", "the folder 'no' does not exist"),
    "plot into a folder": ("train --plot .", "argument --plot: '.' is a folder"),
    "plot in no picture format": ("train --plot c.txt", ".txt is not a picture format"),
    "demo in no picture format": ("demo --out d.csv", ".csv is not a picture format"),
    "empty model name": ("train --save ''", "argument --save: ''; accepted: a file name"),
    "model over the data": ("train d.csv --target y --save d.csv", "same file as DATA"),
    "plot over the model's sidecar": ("train --save m.npz --plot m.npz.cli.json", ".json"),
    "plot over the data": ("train d.csv --target y --plot d.csv", ".csv is not a picture"),
    "picture over the model": ("train --save m.png --plot m.png", "same file as --save"),
    "picture that needs LaTeX": ("train --plot c.pgf", ".pgf is not a picture format"),
    "plot beside a folder of that name": ("train --plot sub", "argument --plot: 'sub.png' is"),
    "huge dpi": ("demo --dpi 100000", "argument --dpi: '100000'; accepted: an int from 10"),
    "superscript size": ("train --hidden ²", "argument --hidden: '²' is not a list"),
    "empty size": ("train --hidden 64,,64", "argument --hidden: '64,,64' is not a list"),
    "small dpi": ("demo --dpi 5", "argument --dpi: '5'; accepted: an int from 10 to 1200"),
    "batch size 0": ("train --batch-size 0", "'0'; accepted: an int >= 1, or full"),
    "features of the digits": ("train --features a", "--features needs a DATA file (CSV)"),
    "target of an npz": ("train d.npz --target y", "--target selects CSV columns; in d.npz"),
    "columns of an npy": ("train d.npy --target y --features a", "--target and --features"),
}


@pytest.mark.parametrize("name", list(NAMED))
def test_a_bad_option_is_named_before_any_training(tmp_path, name):
    command, message = NAMED[name]
    (tmp_path / "sub.png").mkdir()
    r = xpmlp(command, cwd=tmp_path)
    assert message in assert_one_line_error(r)
    assert r.stdout == ""  # nothing trained


def test_a_diverging_run_ends_in_one_line_without_numpy_warnings(tmp_path, data):
    r = xpmlp("train data.csv --target y --features a,b --lr 1e30 --epochs 5 --quiet", tmp_path)
    assert r.returncode == 1
    assert assert_one_line_error(r).endswith("; lower --lr (it is 1e+30)")  # the flag's name


def test_help_shows_the_defaults(tmp_path):
    out = " ".join(ok("train --help", cwd=tmp_path).split())  # as one line, unwrapped
    for shown in ("--epochs EPOCHS (default: 100)", "(default: 0.001)", "(default: 64,64)"):
        assert shown in out
    assert "(default: 3000)" in ok("demo --help", cwd=tmp_path)


def test_an_empty_hidden_list_trains_without_a_hidden_layer(tmp_path, data):
    ok("train data.csv --target y --features a,b --hidden '' --epochs 1 --save m.npz", tmp_path)
    assert load_network(tmp_path / "m.npz").layer_sizes == [2, 1]


TABLE_HINTS = {
    "no header row": ("n.csv", "0.5,1.5,2\n1,2,3\n", "--target y", "the first line holds numbers"),
    "semicolons": ("s.csv", "a;b;y\n1;2;3\n", "--target y", "separated by ','"),
    "not a table": ("m.json", "{}", "--target y", ".json files are not read here; accepted"),
}


@pytest.mark.parametrize("name", list(TABLE_HINTS))
def test_a_table_that_cannot_be_read_says_why(tmp_path, name):
    file, text, options, message = TABLE_HINTS[name]
    (tmp_path / file).write_text(text)
    assert message in assert_one_line_error(xpmlp(f"train {file} {options}", cwd=tmp_path))


def test_a_non_finite_feature_in_an_npz_is_located(tmp_path):
    X = np.zeros((6, 3))
    X[4, 1] = np.inf
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(6.0))
    line = assert_one_line_error(xpmlp("train d.npz", cwd=tmp_path))
    assert "the features hold inf (row 4, column 1, the first of 1)" in line


def test_an_npz_model_on_a_csv_explains_its_feature_names(tmp_path, data):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(30, 2)), y=rng.normal(size=30))
    ok("train d.npz --epochs 1 --save m.npz", cwd=tmp_path)
    line = assert_one_line_error(xpmlp("evaluate m.npz data.csv", cwd=tmp_path))
    assert "feature column 'x0' is not in data.csv; columns: a, b, y, kind (x0, x1" in line


def test_a_data_file_as_the_model_is_named_once(tmp_path, data):
    (tmp_path / "data.csv.bak").write_text(data.read_text())
    line = assert_one_line_error(xpmlp("predict data.csv data.csv.bak", cwd=tmp_path))
    assert (
        line == "xpmlp: error: data.csv is not a model saved by xpmlp: not an .npz (zip) archive"
    )
    np.savez(tmp_path / "arrays.npz", W0=np.zeros((3, 3)))
    line = assert_one_line_error(xpmlp("predict arrays.npz data.csv", cwd=tmp_path))
    assert line.count("arrays.npz") == 1
    assert line.endswith("the file has no 'metadata' entry; it was not written by MLP.save")


def test_one_held_out_row_has_no_r2(tmp_path, data):
    out = ok(
        "train data.csv --target y --features a,b --epochs 1 --validation-fraction 0.005 --quiet",
        tmp_path,
    )
    assert "held-out R^2 undefined for one row, RMSE" in out


def test_train_into_a_closed_pipe_still_saves_the_model(tmp_path, data):
    # `xpmlp train ... --save m.npz | head -1`: the reader is gone before the first line
    read, write = os.pipe()
    os.close(read)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPMLP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    command = "train data.csv --target y --features a,b --epochs 3 --save m.npz"
    r = subprocess.run(
        [sys.executable, "-m", "xpmlp", *command.split()],
        cwd=tmp_path, env=env, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    os.close(write)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert load_network(tmp_path / "m.npz").layer_sizes == [2, 64, 64, 1]


def test_a_numeric_target_with_a_stray_text_value_is_an_error_not_160_classes(tmp_path, data):
    rows = list(csv.reader(data.read_text().splitlines()))
    rows[7][2] = "1,247.23"  # column y, line 8 of the file
    write_csv(tmp_path / "th.csv", rows[0], list(zip(*rows[1:])))
    line = assert_one_line_error(xpmlp("train th.csv --target y --features a,b", cwd=tmp_path))
    assert "target column 'y' of th.csv holds '1,247.23' on line 8" in line
    assert "160 classes" in line and "--task classification" in line
    command = "train th.csv --target y --features a,b --task classification --epochs 1"
    assert "160 classes" in ok(command, cwd=tmp_path)


def test_an_unbalanced_quote_names_the_file_and_the_line(tmp_path):
    (tmp_path / "q.csv").write_text('x,y\n1,0.5\n2,1.5\n3,"2.5\n4,3.5\n')
    line = assert_one_line_error(xpmlp("train q.csv --target y", cwd=tmp_path))
    assert "q.csv, line 4:" in line


def test_evaluate_a_regression_model_on_a_text_target_names_the_value(tmp_path, data, model):
    rows = list(csv.reader(data.read_text().splitlines()))
    rows[4][2] = "high"  # column y, line 5 of the file
    write_csv(tmp_path / "new.csv", rows[0], list(zip(*rows[1:])))
    line = assert_one_line_error(xpmlp("evaluate m.npz new.csv", cwd=tmp_path))
    assert "target column 'y' of new.csv holds 'high' on line 5" in line


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--target y --features a,y", "column 'y' cannot be both the target and a feature"),
        ("--target y,y --features a,b", "target column 'y' is named twice"),
    ],
)
def test_a_column_used_twice_is_an_error(tmp_path, data, options, message):
    assert message in assert_one_line_error(xpmlp(f"train data.csv {options}", cwd=tmp_path))


def test_values_near_the_float_range_train_save_and_evaluate(tmp_path, data):
    rows = list(csv.reader(data.read_text().splitlines()))
    big = [[f"{float(r[0]) * 1e200:g}", r[1], f"{float(r[2]) * 1e200:g}"] for r in rows[1:]]
    write_csv(tmp_path / "big.csv", ["a", "b", "y"], list(zip(*big)))
    ok("train big.csv --target y --epochs 2 --save m.npz", cwd=tmp_path)
    meta = json.loads((tmp_path / "m.npz.cli.json").read_text())
    assert all(np.isfinite(meta[k]).all() for k in ("x_mean", "x_std", "y_mean", "y_std"))
    out = ok("evaluate m.npz big.csv", cwd=tmp_path)
    assert "nan" not in out and "inf" not in out


def test_error_lines_count_physical_lines_past_a_quoted_line_break(tmp_path):
    (tmp_path / "m.csv").write_text('a,b,c\n1,2,"multi\nline"\n3,4,x\n\n5,oops,x\n')
    line = assert_one_line_error(xpmlp("train m.csv --target c", cwd=tmp_path))
    assert "the value 'oops' on line 6" in line


def test_a_plot_name_without_a_suffix_is_written_and_reported_as_png(tmp_path, data):
    out = ok("train data.csv --target y --features a,b --epochs 2 --plot curve", cwd=tmp_path)
    assert "wrote curve.png" in out
    assert_png(tmp_path / "curve.png")
    assert not (tmp_path / "curve").exists()


def test_a_one_hot_T_in_an_npz_is_one_target_of_k_classes(tmp_path):
    """It was K yes/no targets: rows came back with no class, accuracy 0.37."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    c = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    np.savez(tmp_path / "oh.npz", X=X, T=np.eye(3)[c])
    out = ok("train oh.npz --epochs 40 --lr 0.01 --save m.npz", cwd=tmp_path)
    assert "3 classes" in out
    meta = json.loads((tmp_path / "m.npz.cli.json").read_text())
    assert meta["target_names"] == ["T"] and meta["classes"] == [["0", "1", "2"]]
    pred = ok("predict m.npz oh.npz", cwd=tmp_path).splitlines()
    assert pred[0] == "T"
    assert np.mean(np.asarray(pred[1:], dtype=int) == c) > 0.9


@pytest.mark.parametrize("output", ["logistic", "identity", "softmax"])
def test_each_epoch_scores_a_classification_as_the_held_out_line_does(tmp_path, data, output):
    """Per epoch MLP.score took every output > 0.5 (logistic) or R^2 (identity); the held-out
    line, the largest output."""
    out = ok(
        f"train data.csv --target kind --features a,b --epochs 8 --output {output}", cwd=tmp_path
    )
    last = [line for line in out.splitlines() if line.startswith("epoch")][-1]
    held = out.split("held-out accuracy ")[1].split()[0]
    assert last.endswith(f"val accuracy {held}")


def test_predict_without_the_sidecar_says_what_it_does(tmp_path, model):
    write_csv(tmp_path / "ab.csv", ["a", "b"], [[0.5, -0.25], [0.1, 0.7]])
    with_sidecar = ok("predict m.npz ab.csv", cwd=tmp_path).splitlines()
    (tmp_path / "m.npz.cli.json").unlink()
    r = xpmlp("predict m.npz ab.csv", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "m.npz.cli.json is missing: the features go in as they are" in r.stderr
    rows = r.stdout.splitlines()
    assert with_sidecar[0] == "y" and rows[0] == "y0" and len(rows) == len(with_sidecar)


def test_several_regression_targets_report_each_ones_errors(tmp_path):
    """RMSE and MAE were pooled over targets in units a million apart."""
    rng = np.random.default_rng(4)
    a, b = rng.uniform(-1, 1, 120), rng.uniform(-1, 1, 120)
    write_csv(tmp_path / "m.csv", ["a", "b", "big", "small"], [a, b, 1e4 * (a + b), 1e-3 * a])
    out = ok("train m.csv --target big,small --epochs 30 --lr 0.01 --quiet", cwd=tmp_path)
    line = out.split("held-out ")[1]
    assert "(mean over 2 targets); big: RMSE " in line and "; small: RMSE " in line
    big = float(line.split("big: RMSE ")[1].split(",")[0])
    small = float(line.split("small: RMSE ")[1].split(",")[0])
    assert small < 1e-3 < 1 < big


def test_a_csv_that_is_not_utf8_names_the_byte_and_the_encoding(tmp_path):
    (tmp_path / "latin.csv").write_bytes(b"caf\xe9,y\n1,0\n2,1\n")
    line = assert_one_line_error(xpmlp("train latin.csv --target y", cwd=tmp_path))
    assert "latin.csv is not UTF-8 text (byte 0xe9" in line and "accepted: CSV files" in line


def test_an_npz_of_python_objects_is_not_called_damaged(tmp_path):
    np.savez(tmp_path / "obj.npz", X=np.array([[1, None]], dtype=object), y=[1.0])
    line = assert_one_line_error(xpmlp("train obj.npz", cwd=tmp_path))
    assert "obj.npz holds Python objects" in line and "damaged" not in line


def test_a_bad_xpmlp_backend_is_named_as_the_variable(monkeypatch, capsys):
    from xpmlp.backend import resolve
    from xpmlp.info import print_info

    monkeypatch.setenv("XPMLP_BACKEND", "foo")
    with pytest.raises(ValueError, match="the environment variable XPMLP_BACKEND='foo'"):
        resolve(None)
    print_info()
    assert "default backend: foo (unusable: the environment variable" in capsys.readouterr().out


@pytest.mark.parametrize("out", ["data.csv", "m.npz", "m.npz.cli.json", "hard.csv"])
def test_predict_never_writes_over_its_model_or_data(tmp_path, model, out):
    """--out data.csv replaced the data; --out m.npz destroyed the model."""
    os.link(tmp_path / "data.csv", tmp_path / "hard.csv")  # a hard link is the same file
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    line = assert_one_line_error(xpmlp(f"predict m.npz data.csv --out {out}", cwd=tmp_path))
    assert f"--out {out} is the same file as" in line
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_hard_link_to_the_data_is_the_data(tmp_path, data):
    os.link(data, tmp_path / "hard.csv")
    line = assert_one_line_error(xpmlp("train hard.csv --target y --save data.csv", tmp_path))
    assert "--save data.csv is the same file as DATA" in line


# ------------------------------------------------------------------ tables


def test_prepare_standardises_with_the_training_rows_only():
    from xpmlp import tables

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2)) * [1.0, 100.0] + [5.0, -3.0]
    X[:4] += 1000.0  # outliers: in the held-out part or not, the statistics differ
    table = tables.Table(X, [rng.normal(size=20)], ["a", "b"], ["y"], "t")
    Xs, T, tr, va, out, meta = tables.prepare(
        table, task="regression", output="auto", validation_fraction=0.25, seed=0
    )
    np.testing.assert_allclose(meta["x_mean"], X[tr].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(meta["x_std"], X[tr].std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(Xs[tr].mean(axis=0), 0, atol=1e-10)


def test_predicted_codes_read_exactly_one_half_as_the_first_class():
    from xpmlp import tables

    got = tables.predicted_codes(np.array([[0.5], [0.5 + 1e-12]]), [["no", "yes"]])
    np.testing.assert_array_equal(got[0], [0, 1])


# ------------------------------------------------------------------ saving, odd tables


def test_a_folder_in_the_sidecars_place_is_refused_before_training(tmp_path, data):
    """The model was written, the sidecar not: predict used the old sidecar's statistics."""
    (tmp_path / "m.npz.cli.json").mkdir()
    r = xpmlp("train data.csv --target y --features a,b --epochs 1 --save m.npz", tmp_path)
    line = assert_one_line_error(r)
    assert line.endswith("--save m.npz: cannot write m.npz.cli.json: Is a directory")
    assert r.stdout == "" and not (tmp_path / "m.npz").exists()


def test_save_model_changes_neither_file_when_one_cannot_be_written(tmp_path, monkeypatch):
    import xpmlp
    from xpmlp import tables

    path, side = tmp_path / "m.npz", tmp_path / "m.npz.cli.json"
    tables.save_model(xpmlp.MLP([2, 3, 1], seed=0), str(path), {"old": 1})
    before = {p.name: p.read_bytes() for p in (path, side)}
    side.unlink()
    side.mkdir()  # the sidecar cannot be written: the model is left as it was
    with pytest.raises(IsADirectoryError):
        tables.save_model(xpmlp.MLP([2, 3, 1], seed=1), str(path), {"new": 2})
    assert path.read_bytes() == before["m.npz"]
    side.rmdir()
    side.write_bytes(before["m.npz.cli.json"])

    def full_disk(self, file):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xpmlp.MLP, "save", full_disk)  # the model fails: the sidecar is kept
    with pytest.raises(OSError, match="No space left"):
        tables.save_model(xpmlp.MLP([2, 3, 1], seed=1), str(path), {"new": 2})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file


def test_a_regression_sidecar_on_a_classifier_is_refused(tmp_path, data):
    ok("train data.csv --target kind --features a,b --epochs 1 --save c.npz", cwd=tmp_path)
    side = tmp_path / "c.npz.cli.json"
    meta = json.loads(side.read_text())
    meta.update(task="regression", y_mean=[0.0] * 3, y_std=[1.0] * 3, target_names=list("abc"))
    side.write_text(json.dumps(meta))
    for command in ("predict", "evaluate"):
        line = assert_one_line_error(xpmlp(f"{command} c.npz data.csv", cwd=tmp_path))
        assert line == (
            "xpmlp: error: c.npz.cli.json: task is 'regression'; accepted: 'classification' "
            "(the model's output is softmax)"
        )


@pytest.mark.parametrize("name", ["z.npz", "z.npy"])
def test_a_table_without_rows_is_one_line(tmp_path, model, name):
    np.savez(tmp_path / "z.npz", X=np.zeros((0, 2)), y=np.zeros(0))
    np.save(tmp_path / "z.npy", np.zeros((0, 3)))
    for command in (f"train {name}", f"evaluate m.npz {name}", f"predict m.npz {name}"):
        line = assert_one_line_error(xpmlp(command, cwd=tmp_path))
        assert line == f"xpmlp: error: {name} has no rows"


def test_evaluate_matches_labels_that_look_like_numbers_by_their_text(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=60)
    code = np.where(x < -0.5, "01", np.where(x < 0.5, "02", "other"))
    write_csv(tmp_path / "train.csv", ["x", "code"], [x, code])
    ok("train train.csv --target code --epochs 1 --save m.npz", cwd=tmp_path)
    assert json.loads((tmp_path / "m.npz.cli.json").read_text())["classes"] == [
        ["01", "02", "other"]
    ]
    write_csv(tmp_path / "held.csv", ["x", "code"], [[-1.0, 0.0], ["01", "02"]])
    assert "accuracy" in ok("evaluate m.npz held.csv", cwd=tmp_path)
    write_csv(tmp_path / "new.csv", ["x", "code"], [[-1.0, 0.0], ["01", "03"]])
    line = assert_one_line_error(xpmlp("evaluate m.npz new.csv", cwd=tmp_path))
    assert "target column 'code' of new.csv holds '03', a class the model never saw" in line


def test_evaluate_on_an_npz_without_a_target_says_so(tmp_path, model):
    np.savez(tmp_path / "x.npz", X=np.zeros((4, 2)))
    line = assert_one_line_error(xpmlp("evaluate m.npz x.npz", cwd=tmp_path))
    assert line == "xpmlp: error: x.npz has no target (an array 'y' or 'T' beside 'X')"


def test_a_folder_given_as_a_file_is_called_a_folder(tmp_path, model):
    (tmp_path / "d.csv").mkdir()
    line = assert_one_line_error(xpmlp("train d.csv --target y", cwd=tmp_path))
    assert line == "xpmlp: error: d.csv is a folder; accepted: a CSV, .npz or .npy file"
    line = assert_one_line_error(xpmlp("predict d.csv data.csv", cwd=tmp_path))
    assert line.startswith("xpmlp: error: d.csv is a folder; accepted: a model file")


def test_data_piped_into_dev_stdin_is_read(tmp_path, data):
    command = "train /dev/stdin --target y --features a,b --epochs 1 --quiet"
    assert "held-out R^2" in ok(command, cwd=tmp_path, stdin=data.read_text())


def test_one_held_out_row_gives_no_score_per_epoch(tmp_path):
    write_csv(tmp_path / "two.csv", ["a", "y"], [[1, 3], [2, 4]])
    out = ok("train two.csv --target y --task regression --epochs 3", cwd=tmp_path)
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    assert epochs and not any("val" in line for line in epochs)
    assert "held-out R^2 undefined for one row" in out


def test_a_truncated_model_is_named_once(tmp_path, model):
    raw = model.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    line = assert_one_line_error(xpmlp("predict cut.npz data.csv", cwd=tmp_path))
    assert line.count("cut.npz") == 1
    assert line.startswith("xpmlp: error: cut.npz is not a readable .npz archive (truncated?)")


def test_predictions_keep_every_digit(tmp_path):
    """Targets near 1.7e9 that differ by tens came out as '1.7e+09' in every row."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = 1.7e9 + 10 * X[:, 0] + 3 * X[:, 1]
    write_csv(
        tmp_path / "big.csv", ["a", "b", "y"], [X[:, 0], X[:, 1], [repr(float(v)) for v in y]]
    )
    ok("train big.csv --target y --epochs 5 --dtype float64 --save m.npz --quiet", cwd=tmp_path)
    ok("predict m.npz big.csv --out p.csv", cwd=tmp_path)
    got = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert len(set(got.tolist())) == 60  # one value per row, as the model gives them
    from xpmlp import tables

    net, meta = tables.load_model(str(tmp_path / "m.npz"), None, None)
    expected = tables.decode_outputs(
        np.asarray(net.predict(tables.model_input(net, X, meta, "big.csv"))), meta
    )[0]
    np.testing.assert_array_equal(got, expected)


def test_a_side_file_of_another_save_of_the_model_is_refused(tmp_path, data):
    """Two saves to one name (two trainings at once, a copied side file) could pair one's
    model with the other's side file: predict went on with the wrong statistics."""
    train = "train data.csv --target y --features a,b --epochs 1 --quiet --save"
    ok(f"{train} m.npz", cwd=tmp_path)
    ok(f"{train} other.npz --seed 1 --hidden 4", cwd=tmp_path)
    side = tmp_path / "m.npz.cli.json"
    (tmp_path / "other.npz").replace(tmp_path / "m.npz")  # m.npz beside m's side file
    for command in ("predict", "evaluate"):
        line = assert_one_line_error(xpmlp(f"{command} m.npz data.csv", cwd=tmp_path))
        saved = json.loads(side.read_text())["model_sha256"]  # shown as the digest expected
        assert line.startswith(f"xpmlp: error: m.npz.cli.json: model_sha256 is '{saved[:12]}...';")
        assert "that of m.npz (this side file is of another model, or of another save" in line
    meta = json.loads(side.read_text())  # a side file of version 1 has no digest to check
    del meta["model_sha256"]
    side.write_text(json.dumps({**meta, "version": 1}))
    assert ok("predict m.npz data.csv", cwd=tmp_path).startswith("y\n")


def test_decimal_commas_in_a_semicolon_file_get_the_separator_hint(tmp_path):
    (tmp_path / "semi.csv").write_text("a;b;y\n1,5;2,25;1\n3;4;2\n")
    line = assert_one_line_error(xpmlp("train semi.csv --target y", cwd=tmp_path))
    assert line.endswith(
        "line 2: 3 fields, the header has 1; the columns are separated by ',' here "
        "(a tab in .tsv files)"
    )


def test_evaluate_takes_a_class_label_that_reads_as_a_missing_value(tmp_path):
    """A model trained on .npz labels predicts 'none'; evaluate refused that label in a CSV
    as a missing value. A word not among the classes is still a missing value."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 2))
    labels = np.array(["none", "mild", "severe"])[np.digitize(X[:, 0], [-0.5, 0.5])]
    np.savez(tmp_path / "sev.npz", X=X, y=labels)
    ok("train sev.npz --epochs 30 --save m.npz", cwd=tmp_path)
    write_csv(tmp_path / "sev.csv", ["x0", "x1", "y"], [X[:, 0], X[:, 1], labels])
    out = ok("evaluate m.npz sev.csv", cwd=tmp_path)
    assert out.startswith("sev.csv: accuracy ")
    line = assert_one_line_error(xpmlp("train sev.csv --target y", cwd=tmp_path))
    assert "holds 'none' on line " in line and "a missing value" in line and "rename it" in line
    write_csv(tmp_path / "na.csv", ["x0", "x1", "y"], [X[:, 0], X[:, 1], ["NA", *labels[1:]]])
    line = assert_one_line_error(xpmlp("evaluate m.npz na.csv", cwd=tmp_path))
    assert "holds 'NA' on line 2, a missing value" in line and "none of the model's" in line


def test_an_empty_line_in_a_one_column_file_is_a_missing_value_not_skipped(tmp_path, data):
    """predict skipped it: fewer predictions than rows, and no word of it."""
    ok("train data.csv --target y --features a --epochs 5 --save m.npz", cwd=tmp_path)
    (tmp_path / "gap.csv").write_text("a\n0.1\n\n0.5\n")
    line = assert_one_line_error(xpmlp("predict m.npz gap.csv", cwd=tmp_path))
    assert "gap.csv, line 3: an empty line, in a one-column file a missing value of 'a'" in line
    (tmp_path / "tail.csv").write_text("a\n0.1\n0.5\n\n\n")  # blank lines after the last row
    assert len(ok("predict m.npz tail.csv", cwd=tmp_path).splitlines()) == 3
    (tmp_path / "head.csv").write_text("a\n\n0.1\n0.5\n")  # before the first: one as well
    line = assert_one_line_error(xpmlp("predict m.npz head.csv", cwd=tmp_path))
    assert "head.csv, line 2: an empty line" in line


def test_predict_leaves_the_target_of_npz_and_npy_data_unread(tmp_path):
    """predict refused NaN targets (the placeholder of unknown ones) and a y of other rows."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    np.save(tmp_path / "d.npy", np.column_stack([X, X[:, 0] > 0]))
    ok("train d.npy --epochs 5 --save m.npz", cwd=tmp_path)
    np.save(tmp_path / "nan.npy", np.column_stack([X, np.full(60, np.nan)]))
    np.savez(tmp_path / "nan.npz", X=X, y=np.full(60, np.nan))
    np.savez(tmp_path / "short.npz", X=X, y=np.zeros(10))
    for name in ("nan.npy", "nan.npz", "short.npz"):
        assert len(ok(f"predict m.npz {name}", cwd=tmp_path).splitlines()) == 61
    line = assert_one_line_error(xpmlp("evaluate m.npz nan.npz", cwd=tmp_path))
    assert "array 'y' holds nan in row 0" in line


def test_integer_labels_past_float_precision_keep_every_digit(tmp_path):
    """They were read as float64: 10000000000000001 became class 10000000000000000, and
    two such ids one apart were one class."""
    x = np.linspace(-1, 1, 40)
    ids = np.where(x > 0, "10000000000000001", "10000000000000002")
    write_csv(tmp_path / "d.csv", ["x", "id"], [x, ids])
    ok("train d.csv --target id --epochs 30 --save m.npz", cwd=tmp_path)
    meta = json.loads((tmp_path / "m.npz.cli.json").read_text())
    assert meta["classes"] == [["10000000000000001", "10000000000000002"]]
    assert set(ok("predict m.npz d.csv", cwd=tmp_path).split()[1:]) <= set(ids)
    out = ok("evaluate m.npz d.csv", cwd=tmp_path)
    signed = np.array(["+" + i for i in ids])  # the same labels, written otherwise
    write_csv(tmp_path / "s.csv", ["x", "id"], [x, signed])
    assert ok("evaluate m.npz s.csv", cwd=tmp_path).split()[1:] == out.split()[1:]
    X = np.column_stack([x, -x])  # .npz labels too
    np.savez(tmp_path / "d.npz", X=X, y=np.where(x > 0, 2**53 + 1, 2**53 + 2))
    ok("train d.npz --epochs 5 --save n.npz", cwd=tmp_path)
    meta = json.loads((tmp_path / "n.npz.cli.json").read_text())
    assert meta["classes"] == [[str(2**53 + 1), str(2**53 + 2)]]
    # many values are numbers, as any integers: nanosecond times stay a regression target
    t = 1_700_000_000_000_000_000 + np.arange(40) * 1_000_000_007
    write_csv(tmp_path / "t.csv", ["x", "t"], [x, t])
    assert "held-out R^2" in ok("train t.csv --target t --epochs 2", cwd=tmp_path)


def test_evaluate_keeps_several_binary_targets_apart_in_an_npz(tmp_path):
    """Rows with a single 1 were merged into one target of two classes: 'the model predicts
    2 target column(s), --target names 1', without a --target given."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0]).astype(float)
    np.savez(tmp_path / "train.npz", X=X, y=Y)
    one = Y.sum(axis=1) == 1
    np.savez(tmp_path / "test.npz", X=X[one], y=Y[one])
    ok("train train.npz --epochs 5 --hidden 8 --save m.npz", cwd=tmp_path)
    out = ok("evaluate m.npz test.npz", cwd=tmp_path)
    assert out.startswith("test.npz: accuracy ") and f"/{one.sum()})" in out


@pytest.mark.parametrize(
    ("header", "row", "why"),
    [(",a,y", "{i},{a},{y}", "column 1 has no name in the header row (a row index?"),
     ("a,y,", "{a},{y},", "column 3 has no name in the header row (a separator at the end")],
)  # fmt: skip
def test_a_column_without_a_name_is_refused(tmp_path, header, row, why):
    """pandas' to_csv writes the index under an empty name: it was trained on as a feature."""
    rows = [row.format(i=i, a=i / 10, y=i % 2) for i in range(10)]
    (tmp_path / "d.csv").write_text("\n".join([header, *rows]) + "\n")
    line = assert_one_line_error(xpmlp("train d.csv --target y", cwd=tmp_path))
    assert why in line and "--features" in line
    # a column left unread may have no name: the features named, or the model's
    ok("train d.csv --target y --features a --epochs 1 --save m.npz", cwd=tmp_path)
    assert ok("predict m.npz d.csv", cwd=tmp_path).startswith("y\n")


def test_softmax_on_a_target_taken_for_regression_names_task_classification(tmp_path):
    x = np.linspace(-1, 1, 100)
    write_csv(tmp_path / "d.csv", ["x", "k"], [x, np.arange(100) % 26])
    line = assert_one_line_error(xpmlp("train d.csv --target k --output softmax", cwd=tmp_path))
    assert "does not fit regression" in line and "--task classification" in line


def test_an_npz_without_feature_columns_is_named(tmp_path):
    np.savez(tmp_path / "x0.npz", X=np.zeros((5, 0)), y=np.zeros(5))
    line = assert_one_line_error(xpmlp("train x0.npz", cwd=tmp_path))
    assert "x0.npz: the features have shape (5, 0)" in line


def test_a_column_name_with_a_comma_is_named_in_double_quotes(tmp_path):
    """--target and --features split on commas, so a header name holding one could not be
    given at all; the column list of an error now shows it as it is to be given."""
    rows = ['x,"price, usd","a ""b"""'] + [f"{i},{2 * i}.5,{i % 3}" for i in range(40)]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    base = "train c.csv --epochs 2 --task regression --save m.npz"
    ok(base + ' --target \'"price, usd"\' --features \'x, "a ""b"""\'', cwd=tmp_path)
    side = json.loads((tmp_path / "m.npz.cli.json").read_text())
    assert side["target_names"] == ["price, usd"] and side["feature_names"] == ["x", 'a "b"']
    line = assert_one_line_error(xpmlp(base + " --target 'price, usd'", cwd=tmp_path))
    assert line.endswith("""is not in c.csv; columns: x, "price, usd", "a ""b\"\"\"""")
    line = assert_one_line_error(xpmlp(base + """ --target '"price, usd'""", cwd=tmp_path))
    assert '\'"price, usd\' is no list of names; accepted: a,b or a,"c, d"' in line


def test_ctrl_c_in_train_stops_the_training_and_scores_saves_and_plots_the_model(tmp_path, data):
    """Ctrl-C ended the command at once: the minutes of training were lost, unsaved. It now
    stops the training (as scikit-learn's MLP does), and the rest of the command runs."""
    import signal

    pytest.importorskip("matplotlib")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XPMLP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    command = "train data.csv --target y --features a,b --epochs 1000000 --save m.npz --plot c"
    p = subprocess.Popen(
        [sys.executable, "-m", "xpmlp", *command.split()], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert p.stdout.readline().startswith("data.csv: ")  # flushed once the data is read
    assert p.stdout.readline().startswith("MLP [2, 64, 64, 1]")
    assert p.stdout.readline().startswith("epoch       1/1000000   loss ")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "xpmlp: training interrupted after " in err and "scored, saved, plotted" in err
    assert "held-out R^2 " in out and "saved m.npz" in out and "wrote c.png" in out
    epochs = len(load_network(tmp_path / "m.npz").history["loss"])
    assert 1 <= epochs < 1000000
    assert f"interrupted after {epochs} of 1000000 epochs" in err
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def test_train_speaks_the_commands_words(tmp_path, data):
    """Integer targets became classes without a word about --task, and the header read
    '1 features' and 'tanh/identity' for a network without a hidden layer."""
    rng = np.random.default_rng(0)
    write_csv(tmp_path / "n.csv", ["a", "count"], [rng.normal(size=60), rng.integers(0, 4, 60)])
    out = ok("train n.csv --target count --epochs 1 --hidden ''", cwd=tmp_path)
    head = out.splitlines()[:2]
    assert head[0].endswith(" 1 feature, 4 classes (from few integer values: --task regression "
                            "fits them as numbers)")  # fmt: skip
    assert head[1].startswith("MLP [1, 4] softmax on numpy"), head
    out = ok("train n.csv --target count --epochs 1 --task classification", cwd=tmp_path)
    assert out.splitlines()[0].endswith(" 1 feature, 4 classes")


def test_an_unknown_option_points_to_the_commands_help(tmp_path):
    """A misspelt option of train pointed to 'xpmlp --help', which does not list it."""
    line = assert_one_line_error(xpmlp("train d.csv --hiden 3", cwd=tmp_path))
    assert line == "xpmlp: error: unrecognized arguments: --hiden 3 (see 'xpmlp train --help')"
    line = assert_one_line_error(xpmlp("--bogus", cwd=tmp_path))
    assert line == "xpmlp: error: unrecognized arguments: --bogus (see 'xpmlp --help')"
    out = ok("predict --help", cwd=tmp_path)
    assert "MODEL              a model saved by xpmlp train --save" in out


def test_a_device_id_goes_to_the_backend_as_a_number(tmp_path):
    """--device 1 reached CuPy as the string '1', which it refuses, where the help and the
    model take device ids."""
    line = assert_one_line_error(xpmlp("train --device 1 --epochs 1", cwd=tmp_path))
    assert "device=1 cannot be used with backend='numpy'" in line


@pytest.mark.parametrize("case", ["second Ctrl-C", "first epoch"])
def test_ctrl_c_that_leaves_no_whole_training_saves_nothing(tmp_path, data, monkeypatch, case):
    """A second Ctrl-C (raised in the middle of a step) was taken as the first: the model
    was saved with a step half done; one in the first epoch saved an untrained model."""
    import xpmlp
    from xpmlp import _interrupt, cli

    real_fit = xpmlp.MLP.fit

    def fit(self, X, T, **kw):
        if case == "second Ctrl-C":
            real_fit(self, X, T, **{**kw, "epochs": 2})  # whole epochs, then the step
            raise _interrupt.Forced
        raise KeyboardInterrupt

    monkeypatch.setattr(xpmlp.MLP, "fit", fit)
    monkeypatch.chdir(tmp_path)
    argv = [
        "train",
        "data.csv",
        "--target",
        "y",
        "--features",
        "a,b",
        "--quiet",
        "--save",
        "m.npz",
    ]
    status = cli.main(argv)
    assert status == 130 and not (tmp_path / "m.npz").exists()


def test_the_second_ctrl_c_is_told_from_the_first():
    from xpmlp import _interrupt

    with _interrupt.held():
        _interrupt._hold(2, None)  # held
        with pytest.raises(_interrupt.Forced):
            _interrupt._hold(2, None)
    with _interrupt.held():
        _interrupt._hold(2, None)
        with pytest.raises(KeyboardInterrupt) as held:
            _interrupt.check()
        assert type(held.value) is KeyboardInterrupt
