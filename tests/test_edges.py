"""Edges the other test files leave open: the saved generator state and Adam's moments, the
progress display in notebooks, the benchmark's report helpers, backend names and float16,
the CLI's table helpers (class order, one-hot rows, the class/number rule, multi-target
accuracy, training-row statistics, the sidecar), and the commands run in process."""

from __future__ import annotations

import json

import numpy as np
import pytest

import xpmlp

# ------------------------------------------------------------------ io


def _entries(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, json.loads(arrays.pop("metadata").tobytes().decode())


def _write(path, arrays, meta):
    data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, metadata=data, **arrays)
    return path


def test_adams_second_moment_may_be_plus_inf_but_not_minus_inf(tmp_path):
    """Only +inf (G**2 past the float range) is a state fit can go on from; -inf is damage."""
    net = xpmlp.MLP([2, 3, 1], activation="identity", dtype="float32")
    net.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, optimizer="adam")
    net.state.opt_state.v[0][0, 0] = -np.inf
    net.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="array 'opt_v0' contains NaN or inf"):
        xpmlp.load(tmp_path / "m.npz")


def test_a_random_generator_state_of_floats_is_refused(tmp_path):
    """The bit generator's arrays must be integers: a float key is a damaged file."""
    net = xpmlp.MLP([2, 3, 1], seed=0)
    net.rng = np.random.Generator(np.random.MT19937(0))
    net.save(tmp_path / "m.npz")
    arrays, meta = _entries(tmp_path / "m.npz")
    key = meta["rng"]["state"]["state"]["key"]
    assert key["dtype"] in ("<u4", "=u4", "|u4", "uint32")
    key["dtype"] = "<f8"
    _write(tmp_path / "bad.npz", arrays, meta)
    with pytest.raises(ValueError, match="rng state holds a bad array"):
        xpmlp.load(tmp_path / "bad.npz")
    xpmlp.load(tmp_path / "m.npz")  # the file as saved loads


# ------------------------------------------------------------------ progress


def test_a_jupyter_kernels_stream_counts_as_a_terminal():
    """ipykernel's streams say they are no terminal but show tqdm's bars; the check is on
    the module's package (ipykernel.iostream), not the bare name."""
    from xpmlp.progress import on_terminal

    Stream = type("OutStream", (), {"__module__": "ipykernel.iostream", "isatty": lambda s: False})
    assert on_terminal(Stream())
    Plain = type("OutStream", (), {"__module__": "mylib.streams", "isatty": lambda s: False})
    assert not on_terminal(Plain())


# ------------------------------------------------------------------ bench/run.py helpers


def _bench():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(xpmlp.__file__).resolve().parents[1] / "bench" / "run.py"
    spec = importlib.util.spec_from_file_location("xpmlp_bench_run", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_bench_spread_is_half_the_interquartile_range_in_percent_of_the_median():
    run = _bench()
    # quartiles of 1..5 within the data: q1 = 2, q3 = 4; median 3 -> 50 * 2 / 3
    assert run.spread_pct([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(100 / 3)
    assert run.spread_pct([2.0]) == 0.0
    # two or three repeats: quartiles between them, not past them (they were 1.5x the range)
    assert run.spread_pct([1.0, 1.1]) == pytest.approx(50 * 0.05 / 1.05)
    assert run.paired_quartiles([1.02, 1.2], [1.0, 1.0]) == "1.11x (1.06-1.15)"


def test_bench_paired_ratio_is_reference_time_over_runner_time():
    run = _bench()
    # the GEMM-only limit took 1 s, the runner 2 s: the runner reaches 50% of the limit
    assert run.paired_ratio([1.0, 1.0, 1.0], [2.0, 2.0, 4.0]) == pytest.approx(0.5)


def test_bench_loss_check_refuses_a_float32_runner_off_by_1e_4(monkeypatch):
    import argparse
    from types import SimpleNamespace

    run = _bench()

    class Runner:
        def __init__(self, name, loss):
            self.name, self.dtype, self.loss = name, "float32", loss

        def reset(self):
            pass

        def run(self):
            pass

        def weights(self):
            return self.loss

        def info(self):
            return ""

    runners = [("xpmlp", Runner("xpmlp", 1.0)), ("close", Runner("close", 1.0 + 3e-6)),
               ("off", Runner("off", 1.0 + 1e-4))]  # fmt: skip
    monkeypatch.setattr(
        run, "make_runners", lambda wl, args: [(k, lambda r=r: r) for k, r in runners]
    )
    monkeypatch.setattr(run, "loss_of", lambda W, wl: float(W))
    monkeypatch.setattr(run, "PAUSE_S", 0.0)
    wl = SimpleNamespace(key="A", dtype="float32", W0=1.0)
    args = argparse.Namespace(repeats=1, backend="numpy", tf32="off")
    res = run.time_workload(wl, args, lambda *a: None)
    agree = {row["key"]: row["agree"] for row in res["rows"]}
    assert agree["xpmlp"] == "yes" and agree["close"] == "yes"
    assert agree["off"].startswith("NO (tol 1e-05)")


# ------------------------------------------------------------------ backend


def test_a_backend_name_with_dashes_is_the_one_with_underscores():
    """pip spells it array-api-strict; the message's list says array_api_strict."""
    pytest.importorskip("array_api_strict")
    net = xpmlp.MLP([2, 1], backend="array-api-strict")
    assert net.backend == "array_api_strict"


@pytest.mark.parametrize("library", ["torch", "jax.numpy"])
def test_float16_arrays_come_to_numpy_as_float16_not_widened(library):
    """Only floats NumPy lacks (bfloat16, float8) are cast to float32; float16 is NumPy's."""
    mod = pytest.importorskip(library)
    x = mod.asarray([0.5, 1.0 / 3.0], dtype=mod.float16)
    got = xpmlp.backend.to_numpy(x)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, np.array([0.5, 1.0 / 3.0], dtype=np.float16))


# ------------------------------------------------------------------ tables


def _table(X, targets, names=("y",)):
    from xpmlp import tables

    X = np.asarray(X, dtype=np.float64)
    return tables.Table(X, list(targets), [f"x{i}" for i in range(X.shape[1])], list(names), "t")


def test_number_labels_are_ordered_by_value_not_as_text():
    from xpmlp import tables

    t = np.array([10.0, 2.0, 1.0, 2.0, 10.0, 1.0])
    classes, codes = tables.class_codes(_table(np.zeros((6, 1)), [t]))
    assert classes == [["1", "2", "10"]]
    np.testing.assert_array_equal(codes[0], [2, 1, 0, 1, 2, 0])


def test_rows_of_several_ones_are_not_one_hot():
    from xpmlp import tables

    assert tables._one_hot(np.array([[0, 1, 0], [1, 0, 0]]))
    assert not tables._one_hot(np.array([[1, 1, 0], [0, 0, 1]]))  # multi-label indicators


def test_twenty_integer_values_are_still_classes_twenty_one_are_numbers():
    from xpmlp import tables

    assert tables.MAX_CLASSES == 20
    assert tables.infer_task([np.arange(20.0)]) == "classification"
    assert tables.infer_task([np.arange(21.0)]) == "regression"


def test_a_row_is_classified_right_only_when_every_target_column_is():
    from xpmlp import tables

    true = [np.array([0, 1, 1]), np.array([1, 0, 1])]
    predicted = [np.array([0, 1, 0]), np.array([0, 0, 1])]  # rows: one wrong, right, one wrong
    assert tables.classification_metrics(true, predicted) == {
        "accuracy": 1 / 3, "correct": 1, "n": 3,
    }  # fmt: skip


def test_prepare_standardises_regression_targets_with_the_training_rows_only():
    from xpmlp import tables

    rng = np.random.default_rng(0)
    y = rng.normal(size=20) * 3.0 + 7.0
    y[:4] += 1000.0  # outliers: in the held-out part or not, the statistics differ
    table = _table(rng.normal(size=(20, 2)), [y])
    _, T, tr, va, _, meta = tables.prepare(
        table, task="regression", output="auto", validation_fraction=0.25, seed=0
    )
    assert len(va) == 5
    np.testing.assert_allclose(meta["y_mean"], [y[tr].mean()], rtol=1e-12)
    np.testing.assert_allclose(meta["y_std"], [y[tr].std()], rtol=1e-12)
    np.testing.assert_allclose(T[tr].mean(), 0, atol=1e-10)


def test_a_small_validation_fraction_still_holds_out_one_row():
    from xpmlp import tables

    rng = np.random.default_rng(0)
    table = _table(rng.normal(size=(160, 2)), [rng.normal(size=160)])
    _, _, tr, va, _, _ = tables.prepare(
        table, task="regression", output="auto", validation_fraction=0.001, seed=0
    )
    assert len(va) == 1 and len(tr) == 159
    _, _, tr, va, _, _ = tables.prepare(
        table, task="regression", output="auto", validation_fraction=0.0, seed=0
    )
    assert len(va) == 0 and len(tr) == 160


def test_a_sidecar_with_a_zero_target_std_is_refused(tmp_path):
    from xpmlp import tables

    net = xpmlp.MLP([2, 3, 1])
    meta = {
        "format": "xpmlp-cli", "version": 1, "task": "regression",
        "feature_names": ["a", "b"], "x_mean": [0.0, 0.0], "x_std": [1.0, 1.0],
        "y_mean": [0.0], "y_std": [1.0], "target_names": ["y"], "classes": None,
    }  # fmt: skip
    side = tmp_path / "m.npz.cli.json"
    side.write_text(json.dumps(meta))
    assert tables.read_sidecar(side, net)["y_std"] == [1.0]
    side.write_text(json.dumps({**meta, "y_std": [0.0]}))
    with pytest.raises(
        tables.CLIError, match=r"y_std is \[0.0\]; accepted: a list of 1 numbers > 0"
    ):
        tables.read_sidecar(side, net)


# ------------------------------------------------------------------ cli, in process


def _csv(path, header, columns):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(zip(*columns))
    return str(path)


@pytest.fixture
def data(tmp_path):
    """60 rows: features a, b (and c); a regression target y far from 0; labels 'kind'."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 60), rng.uniform(-1, 1, 60)
    c = rng.normal(size=60)
    y = np.round(12345.678 + 100 * (a - 2 * b), 4)
    kind = np.where(a > 0.3, "cat", np.where(b > 0, "dog", "bird"))
    return _csv(tmp_path / "data.csv", ["a", "b", "c", "y", "kind"], [a, b, c, y, kind])


def _main(*argv):
    from xpmlp.cli import main

    return main([str(a) for a in argv])


FAST = ("--features", "a,b", "--hidden", "4", "--batch-size", "full", "--lr", "0.01")


def test_about_twenty_epoch_lines_and_always_the_last_epochs(data, capsys):
    # 70 epochs: a line every round(70 / 20) = 4 epochs, the first, and the last (70 % 4 != 0)
    assert _main("train", data, "--target", "y", "--epochs", 70, *FAST) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch ")]
    assert 15 <= len(lines) <= 25, lines
    assert lines[0].startswith("epoch  1/70") and lines[-1].startswith("epoch 70/70")


def test_the_plot_of_a_classification_gets_every_epochs_held_out_accuracy(
    data, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("matplotlib")
    from xpmlp import plots

    seen = {}
    monkeypatch.setattr(plots, "plot_history", lambda h, path, **kw: seen.update(h=h, **kw))
    out = tmp_path / "c.png"
    code = _main("train", data, "--target", "kind", "--epochs", 5, "--quiet", "--plot", out, *FAST)
    assert code == 0
    assert seen["score_name"] == "accuracy"
    assert len(seen["h"]["loss"]) == 5 and len(seen["h"]["val_score"]) == 5
    assert all(0.0 <= s <= 1.0 for s in seen["h"]["val_score"])


def test_predict_writes_the_predictions_to_eight_significant_digits(data, tmp_path, capsys):
    import csv

    from xpmlp import tables

    model, out = tmp_path / "m.npz", tmp_path / "p.csv"
    assert (
        _main("train", data, "--target", "y", "--epochs", 3, "--quiet", "--save", model, *FAST)
        == 0
    )
    assert _main("predict", model, data, "--out", out) == 0
    with open(out, newline="") as f:
        got = np.array([float(r["y"]) for r in csv.DictReader(f)])
    net, meta = tables.load_model(str(model), None, None)
    table = tables.read_table(data, features=meta["feature_names"])
    Y = np.asarray(net.predict(tables.model_input(net, table.X, meta, data)), dtype=np.float64)
    (want,) = tables.decode_outputs(Y, meta)
    np.testing.assert_allclose(got, want, rtol=1e-7)


def test_evaluate_with_more_target_columns_than_the_model_predicts_is_an_error(
    data, tmp_path, capsys
):
    model = tmp_path / "m.npz"
    assert (
        _main("train", data, "--target", "y", "--epochs", 2, "--quiet", "--save", model, *FAST)
        == 0
    )
    capsys.readouterr()
    assert _main("evaluate", model, data, "--target", "y,c") == 2
    err = capsys.readouterr().err
    assert "the model predicts 1 target column(s), --target names 2" in err


def test_plot_history_shows_one_epoch_and_labels_epochs_by_integers(tmp_path, monkeypatch):
    """One epoch drew a line of one point (nothing), and the epoch axis read 0.96, 1.25."""
    pytest.importorskip("matplotlib")
    from xpmlp import plots

    figures, make = [], plots._figure
    monkeypatch.setattr(plots, "_figure", lambda size: figures.append(make(size)) or figures[-1])
    for n in (1, 3):
        plots.plot_history({"loss": [1.0] * n, "val_score": [0.5] * n}, tmp_path / f"{n}.png")
    for fig in figures:
        for ax in fig.axes:
            assert ax.lines[0].get_marker() == "o"
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_plot_history_returns_the_file_it_wrote(tmp_path):
    """A name without a suffix gets .png from matplotlib: the path returned is that file."""
    pytest.importorskip("matplotlib")
    from xpmlp import plots

    written = plots.plot_history({"loss": [1.0, 0.5], "val_score": [0.2, 0.4]}, tmp_path / "c")
    assert written == tmp_path / "c.png" and written.is_file()
    assert plots.plot_history({"loss": [1.0]}, tmp_path / "d.pdf") == tmp_path / "d.pdf"
    with pytest.raises(TypeError, match="history is a list; accepted: a dict with lists"):
        plots.plot_history([1.0, 0.5], tmp_path / "e.png")
    with pytest.raises(ValueError, match=r"\.xyz is not a picture format"):
        plots.plot_history({"loss": [1.0]}, tmp_path / "e.xyz")


def test_plot_history_refuses_scores_of_some_epochs(tmp_path):
    """A model's history over a fit with validation and one without holds fewer scores than
    epochs: they were drawn from epoch 1, at epochs they do not belong to."""
    pytest.importorskip("matplotlib")
    from xpmlp import MLP, plots

    net = MLP([1, 2, 1], seed=0)
    x = np.linspace(-1, 1, 20)[:, None]
    net.fit(x, x, epochs=3, validation_fraction=0.2)
    net.fit(x, x, epochs=2)
    with pytest.raises(ValueError, match="3 validation scores for 5 epochs"):
        plots.plot_history(net.history, tmp_path / "h.png")
    assert not (tmp_path / "h.png").exists()


def test_info_names_why_the_kernels_are_not_used(monkeypatch):
    """A stale build of _kernels.c was reported as 'not compiled', and XPMLP_KERNELS=1 was
    blamed when set at all."""
    import sys
    import types

    from xpmlp import _fast, info

    monkeypatch.setattr(_fast, "KERNELS", None)
    stale = types.ModuleType("xpmlp._kernels")
    stale.VERSION = _fast.KERNELS_VERSION - 1
    monkeypatch.setitem(sys.modules, "xpmlp._kernels", stale)
    monkeypatch.setenv("XPMLP_KERNELS", "1")
    assert "built from an older _kernels.c" in info.fast_path()
    monkeypatch.setenv("XPMLP_KERNELS", "off")
    assert info.fast_path().endswith("(XPMLP_KERNELS)")
    monkeypatch.setitem(sys.modules, "xpmlp._kernels", None)  # no build: an ImportError
    monkeypatch.delenv("XPMLP_KERNELS")
    assert info.fast_path().endswith("(not compiled at install)")


def test_plot_history_titles_and_refusals(tmp_path, monkeypatch):
    """The default title read 'Validation validation score'; an empty history drew a blank
    picture with fractional epochs; a file object or a score_name of None gave garbled
    messages or labels."""
    import io

    pytest.importorskip("matplotlib")
    from xpmlp import plots

    figures, make = [], plots._figure
    monkeypatch.setattr(plots, "_figure", lambda size: figures.append(make(size)) or figures[-1])
    h = {"loss": [1.0, 0.5], "val_score": [0.1, 0.2]}
    for name, title in (
        ("validation score", "Validation score"),
        ("accuracy", "Validation accuracy"),
    ):
        plots.plot_history(h, tmp_path / "h.png", score_name=name)
        assert figures[-1].axes[1].get_title() == title
    with pytest.raises(ValueError, match="history holds no epochs"):
        plots.plot_history({"loss": [], "val_score": []}, tmp_path / "e.png")
    with pytest.raises(TypeError, match="path is a BytesIO; accepted: a file name"):
        plots.plot_history(h, io.BytesIO())
    with pytest.raises(TypeError, match="score_name=None; accepted: a str"):
        plots.plot_history(h, tmp_path / "n.png", score_name=None)


def test_demo_times_the_training_not_the_picture(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import time

    from xpmlp import cli, plots

    monkeypatch.setattr(plots, "plot_demo", lambda panels, path, dpi: time.sleep(1.0))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--epochs", "5", "--out", "d.png"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("5 full-batch adam steps each on numpy in ") and " ms; wrote" in line
