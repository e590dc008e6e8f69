"""The command line: ``xpmlp demo | train | predict | evaluate | info``.

``xpmlp train`` reads a table (CSV with a header row, ``.npz`` with arrays ``X`` and ``y``
or ``T`` (one-hot: one target of K classes), or ``.npy`` whose last column is the target),
standardises the features, fits an :class:`~xpmlp.MLP` and reports the held-out score;
without data it learns scikit-learn's handwritten digits. ``--save model.npz`` writes the
network with ``MLP.save`` and, next to it, ``model.npz.cli.json``: what the command line
needs to use the network on raw tables again (feature and target names, task, class labels,
the features' mean and standard deviation, the regression targets' mean and standard
deviation). ``xpmlp predict`` and ``xpmlp evaluate`` read both files (``predict`` without
the second one feeds the features in as they are and says so). Reading tables, encoding
targets and the sidecar live in :mod:`xpmlp.tables`; the ``info`` report in :mod:`xpmlp.info`.

Bad input ends with one line ``xpmlp: error: ...`` on standard error and exit status 2 (1
when training diverges); set ``XPMLP_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, _interrupt
from .activations import ACTIVATIONS
from .activations import ALIASES as ACTIVATION_ALIASES
from .backend import BACKENDS, DTYPES, resolve, to_numpy
from .info import print_info
from .io import check_writable
from .objectives import OUTPUTS
from .optim import OPTIMIZERS
from .progress import on_terminal, write
from .tables import (
    TABLE_FILES,
    CLIError,
    Table,
    check_file,
    class_codes,
    classification_metrics,
    decode_outputs,
    digits_or_synthetic,
    format_metrics,
    load_model,
    model_input,
    one_line,
    predicted_codes,
    prepare,
    read_table,
    regression_metrics,
    save_model,
    sidecar_path,
)

# what ends a command with one line on standard error (FloatingPointError: training diverged)
ERRORS = (CLIError, FloatingPointError, ImportError, ValueError, TypeError, OSError, MemoryError)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (``xpmlp: error: ...``)."""

    def error(self, message: str):  # type: ignore[override]
        raise CLIError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------- commands


def _csv_options(data: str | None, **given: Any) -> None:
    """Refuse column options (``--target``, ``--features``) where they select nothing: the
    default data set, or an ``.npz``/``.npy`` file, whose columns are its arrays."""
    options = [f"--{k}" for k, v in given.items() if v]
    if not options:
        return
    what, s = " and ".join(options), "" if len(options) > 1 else "s"
    if data is None:
        raise CLIError(f"{what} need{s} a DATA file (CSV) to select columns of")
    if Path(data).suffix.lower() in (".npz", ".npy"):
        raise CLIError(
            f"{what} select{s} CSV columns; in {Path(data).name} the features are array X "
            "and the target y or T (.npz), or the last column (.npy)"
        )


def _training_table(args: argparse.Namespace) -> Table:
    _csv_options(args.data, target=args.target, features=args.features)
    if args.data is None:
        return digits_or_synthetic()
    check_file(Path(args.data), TABLE_FILES)  # a missing file is named before options
    if Path(args.data).suffix.lower() not in (".npz", ".npy") and not args.target:
        raise CLIError("--target is required for a CSV file: name the column(s) to learn")
    return read_table(
        args.data, target=args.target, features=args.features, need_target=True, task=args.task
    )


def _distinct_files(*named: tuple[str, Any]) -> None:
    """Refuse two of the command's files that are one: ``--save data.csv`` wrote the model
    over the data it was trained on."""
    seen: dict[Any, str] = {}
    for what, path in named:
        if not path:
            continue
        p = Path(path)
        key = (p.stat().st_dev, p.stat().st_ino) if p.exists() else p.resolve()  # hard links
        if key in seen:
            raise CLIError(f"{what} {path} is the same file as {seen[key]}; name another file")
        seen[key] = what


def cmd_train(args: argparse.Namespace) -> int:
    """Fit a network to a table and report its held-out score."""
    import xpmlp

    resolve(args.backend, args.device)  # a missing backend fails before any data is read
    if args.plot:
        from .plots import check_available

        check_available()
    side = sidecar_path(args.save) if args.save else None
    _distinct_files(
        ("DATA", args.data), ("--save", args.save), ("its sidecar", side), ("--plot", args.plot)
    )
    for path in (args.save, side) if args.save else ():
        try:
            check_writable(path)  # before any training
        except OSError as exc:
            raise CLIError(f"--save {args.save}: cannot write {path}: {exc.strerror}") from exc
    table = _training_table(args)
    X, T, tr, va, output, meta = prepare(
        table,
        task=args.task,
        output=args.output,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
    )
    n_val = len(va)
    sizes = [X.shape[1], *args.hidden, T.shape[1]]
    net = xpmlp.MLP(
        sizes,
        args.activation,
        output,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
    )
    classify = meta["task"] == "classification"
    score_name = "accuracy" if classify else "R^2"
    if not args.quiet:
        classes = meta["classes"]
        what = f"{len(classes[0])} classes" if classes and len(classes) == 1 else meta["task"]
        if (
            args.data
            and not args.task
            and classes
            and all(t.dtype.kind == "f" for t in table.targets)
        ):
            what += " (from few integer values: --task regression fits them as numbers)"
        print(
            f"{table.name}: {len(tr)} training and {n_val} held-out samples, "
            f"{_count(X.shape[1], 'feature')}, {what}\n"
            f"MLP {sizes} {f'{args.activation}/' if args.hidden else ''}{output} on {net.backend} "
            f"({args.dtype}), {args.solver} lr={args.lr:g}, batch {args.batch_size or 'full'}, "
            f"{args.epochs} epochs",
            flush=True,
        )
    every = max(1, round(args.epochs / 20))
    Xva = X[va]
    held = Table(table.X[va], [t[va] for t in table.targets], [], table.target_names, "")
    # a classification is scored each epoch as the held-out line scores it (per target
    # column the largest one-hot output, or y > 0.5), which MLP.score does only for softmax
    # outputs; R^2 of the standardised targets is R^2 of the raw ones
    val_scores: list[float] = []
    if classify and n_val:
        _, held_codes = class_codes(held, meta["classes"])  # once, not every epoch

    def report(epoch: int, loss: float, score: float | None, model: Any) -> None:
        if classify and n_val:
            predicted = predicted_codes(_outputs(model, Xva), meta["classes"])
            score = classification_metrics(held_codes, predicted)["accuracy"]
            val_scores.append(score)
        if args.quiet or (epoch % every and epoch not in (1, args.epochs)):
            return
        val = "" if score is None else f"   val {score_name} {score:.4f}"
        write(f"epoch {epoch:>{len(str(args.epochs))}}/{args.epochs}   loss {loss:.5g}{val}")

    # R^2 of one held-out row is undefined (the held-out line says so): no score per epoch
    val_data = (Xva, T[va]) if n_val > 1 and not classify else None
    t0 = time.perf_counter()
    interrupted = False
    try:
        net.fit(
            X[tr],
            T[tr],
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            optimizer=args.solver,
            alpha=args.alpha,
            validation_data=val_data,
            callbacks=[report],
            verbose=not args.quiet and on_terminal(sys.stderr),  # a bar: the lines are above
        )
    except KeyboardInterrupt as exc:  # as scikit-learn's MLP: training stops, the rest goes on
        done = len(net.history["loss"])  # epochs complete; the model is part-way in the next
        if isinstance(exc, _interrupt.Forced) or not done:  # a step half done, or nothing
            raise
        interrupted = True
        print(
            f"xpmlp: training interrupted after {done} of {args.epochs} epochs; the model "
            "trained so far is scored"
            + (", saved" if args.save else "")
            + (", plotted" if args.plot else "")
            + " (Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
    except FloatingPointError as exc:  # the library's advice, in the command's words
        why = str(exc).split(";")[0]
        raise FloatingPointError(f"{why}; lower --lr (it is {args.lr:g})") from None
    seconds = time.perf_counter() - t0
    history = dict(net.history)  # a new model: this fit's, also when interrupted
    if classify and n_val:
        history["val_score"] = val_scores  # a callback's, after each whole epoch
    print(f"final training loss {history['loss'][-1]:.5g} after {_duration(seconds)}")
    if n_val:
        print(f"held-out {format_metrics(_scores(net, Xva, held, meta))}")
    if args.save:
        side = save_model(net, args.save, meta)
        print(f"saved {args.save} (and {side.name})")
    if args.plot:
        from .plots import plot_history

        plot_history(history, args.plot, score_name=score_name)
        print(f"wrote {args.plot}")
    return 130 if interrupted else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    """``12.3 s``, or ``45 ms`` below a tenth of a second (not ``0.0 s``)."""
    return f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds * 1e3:.0f} ms"


def _scores(net: Any, X: np.ndarray, table: Table, meta: dict) -> dict:
    """Accuracy, or R^2, RMSE and MAE, of the network on standardised features ``X`` against
    the table's raw targets: one forward pass."""
    if meta["task"] == "classification":
        _, true = class_codes(table, meta["classes"])  # unknown classes: an error first
        return classification_metrics(true, predicted_codes(_outputs(net, X), meta["classes"]))
    Y = np.stack(decode_outputs(_outputs(net, X), meta), axis=1)
    return regression_metrics(np.stack(table.targets, axis=1), Y, table.target_names)


def _outputs(net: Any, X: np.ndarray) -> np.ndarray:
    """The network's outputs ``Y`` (N, K) for standardised features, as float64 on the host."""
    return np.asarray(to_numpy(net.predict(X)), dtype=np.float64)


def cmd_predict(args: argparse.Namespace) -> int:
    """Write the model's predictions for a table as CSV."""
    side = sidecar_path(args.model)
    _distinct_files(
        ("MODEL", args.model), ("its sidecar", side), ("DATA", args.data), ("--out", args.out)
    )
    net, meta = load_model(args.model, args.backend, args.device)
    if not meta:
        print(
            f"xpmlp: note: {side} is missing: the features go in as they "
            "are and the outputs come out raw; a model saved by xpmlp train needs that file "
            "to standardise its features and decode its targets",
            file=sys.stderr,
        )
    table = read_table(
        args.data, features=meta.get("feature_names"), n_features=net.layer_sizes[0]
    )
    columns = decode_outputs(_outputs(net, model_input(net, table.X, meta, args.data)), meta)
    names = meta.get("target_names") or [f"y{k}" for k in range(len(columns))]
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        for row in zip(*columns):
            # every digit that tells the numbers apart: 1.7e9 + 0.1 is not 1.7e+09
            w.writerow([v if isinstance(v, str) else repr(float(v)) for v in row])
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"wrote {len(table.X)} predictions to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score the model on a labelled table."""
    net, meta = load_model(args.model, args.backend, args.device)
    if not meta:
        raise CLIError(
            f"{sidecar_path(args.model)} is missing; evaluate needs a model saved by xpmlp train"
        )
    _csv_options(args.data, target=args.target)
    target = args.target or meta["target_names"]
    table = read_table(
        args.data,
        target=target,
        features=meta["feature_names"],
        n_features=net.layer_sizes[0],
        need_target=True,
        task=meta["task"],
        classes=meta["classes"] if meta["task"] == "classification" else None,
    )
    if len(table.targets) != len(meta["target_names"]):
        raise CLIError(
            f"the model predicts {len(meta['target_names'])} target column(s), "
            f"--target names {len(table.targets)}"
        )
    scores = _scores(net, model_input(net, table.X, meta, args.data), table, meta)
    print(f"{table.name}: {format_metrics(scores)}")
    return 0


DEMO_FUNCTIONS = (
    ("x^2", r"$x^2$", lambda x: x**2),
    ("sin(pi x)", r"$\sin(\pi x)$", lambda x: np.sin(np.pi * x)),
    ("|x|", r"$|x|$", np.abs),
    ("step H(x)", r"Heaviside step $H(x)$", lambda x: (x >= 0).astype(np.float64)),
)


def cmd_demo(args: argparse.Namespace) -> int:
    """Bishop's PRML Fig. 5.3: a 1-3-1 tanh network fitted to four functions."""
    import xpmlp

    from .plots import DemoPanel, check_available, plot_demo

    check_available()
    x = np.linspace(-1.0, 1.0, 50)[:, None]
    grid = np.linspace(-1.0, 1.0, 201)[:, None]
    panels = []
    t0 = time.perf_counter()
    for name, title, f in DEMO_FUNCTIONS:
        t = f(x)
        net = xpmlp.MLP(
            [1, 3, 1],
            "tanh",
            "identity",
            backend=args.backend,
            device=args.device,
            dtype=args.dtype,
            seed=args.seed,
        )
        history = net.fit(
            x,
            t,
            epochs=args.epochs,
            batch_size=None,
            learning_rate=args.lr,
            optimizer=args.solver,
            shuffle=False,
        )
        cache = net.forward(grid)
        Z = np.asarray(to_numpy(cache.Z[1]), dtype=np.float64)
        y = np.asarray(to_numpy(cache.Z[-1]), dtype=np.float64)[:, 0]
        loss = history["loss"][-1]
        panels.append(DemoPanel(title, x[:, 0], t[:, 0], grid[:, 0], y, Z, loss))
        print(f"{name:<10} final loss {loss:.3e}")
    seconds = time.perf_counter() - t0  # the training, not the picture
    plot_demo(panels, args.out, dpi=args.dpi)
    print(
        f"{args.epochs} full-batch {args.solver} steps each on {net.backend} in "
        f"{_duration(seconds)}; wrote {args.out}"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Versions, backends, CUDA devices and the BLAS in use."""
    print_info()
    return 0


# ------------------------------------------------------------------------- parser


def _hidden(text: str) -> list[int]:
    """``"64,64"`` -> [64, 64]; ``""`` -> [] (no hidden layer)."""
    sizes = [s.strip() for s in text.split(",")] if text.strip() else []
    if not all(s.isdecimal() and int(s) > 0 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of layer sizes; accepted: e.g. 64,64 (ints >= 1)"
        )
    return [int(s) for s in sizes]


def _int(text: str, low: int, high: int | None = None) -> int:
    ok = text.strip().isdecimal() and low <= int(text) and (high is None or int(text) <= high)
    if not ok:
        accepted = f"an int >= {low}" if high is None else f"an int from {low} to {high}"
        raise argparse.ArgumentTypeError(f"{text!r}; accepted: {accepted}")
    return int(text)


def _positive_int(text: str) -> int:
    return _int(text, 1)


def _seed(text: str) -> int:
    return _int(text, 0)


def _dpi(text: str) -> int:
    return _int(text, 10, 1200)  # the picture's pixels grow with its square: 1e5 ran out of memory


def _out_file(text: str) -> str:
    """A file to write, whose folder must exist: checked before any training."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}; accepted: a file name")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; accepted: a file name")
    folder = Path(text).parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: the folder {str(folder)!r} does not exist")
    return text


def _picture_file(text: str) -> str:
    """A picture to write: ``.png`` added to a name without a suffix, and a format that
    matplotlib writes."""
    from .plots import picture_path

    try:
        path = picture_path(_out_file(text))  # a folder is refused before and after .png
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return _out_file(path)


def _batch_size(text: str) -> int | None:
    if text.strip().lower() == "full":
        return None
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}; accepted: an int >= 1, or full (the whole data set)"
        ) from None


def _finite(text: str, accepted: str, ok: Callable[[float], bool]) -> float:
    """``text`` as a finite float for which ``ok`` holds; else an error naming ``accepted``."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (np.isfinite(v) and ok(v)):
        raise argparse.ArgumentTypeError(f"{text!r}; accepted: {accepted}")
    return v


def _positive_float(text: str) -> float:
    return _finite(text, "a number > 0", lambda v: v > 0)


def _nonneg_float(text: str) -> float:
    return _finite(text, "a number >= 0", lambda v: v >= 0)


def _fraction(text: str) -> float:
    v = _nonneg_float(text)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"{text!r}; accepted: a number in [0, 1)")
    return v


def _columns(text: str) -> list[str]:
    """Column names separated by commas; a name that holds a comma in double quotes, as in
    the CSV's header (``'"price, usd",x'``)."""
    try:
        names = next(csv.reader([text], skipinitialspace=True, strict=True), [])
    except csv.Error:  # an unclosed quote
        raise argparse.ArgumentTypeError(
            f'{text!r} is no list of names; accepted: a,b or a,"c, d" (quotes closed)'
        ) from None
    return [c.strip() for c in names if c.strip()]


def _backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default=None,
        help=f"array library: {', '.join(BACKENDS)} (default: $XPMLP_BACKEND, else numpy)",
    )
    p.add_argument(
        "--device",
        type=lambda text: int(text) if text.isascii() and text.isdigit() else text,  # ids
        default=None,
        help="device, e.g. cpu, cuda, cuda:1, or a CUDA device id",
    )


D = "(default: %(default)s)"  # an option's help: its default
MODEL_HELP = "a model saved by xpmlp train --save, beside its MODEL.cli.json"


def build_parser() -> argparse.ArgumentParser:
    """The ``xpmlp`` argument parser with its five commands."""
    parser = _Parser(
        prog="xpmlp",
        description="Multilayer perceptrons trained by explicit error backpropagation "
        "on NumPy, CuPy, PyTorch, JAX or array-api-strict.",
    )
    parser.add_argument("--version", action="version", version=f"xpmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    activations = [*ACTIVATIONS, *ACTIVATION_ALIASES]

    p = sub.add_parser("demo", help="fit a 1-3-1 tanh network to four curves; write a PNG")
    p.add_argument(
        "--out",
        type=_picture_file,
        default="xpmlp-demo.png",
        help="picture file (default: %(default)s)",
    )
    p.add_argument("--epochs", type=_positive_int, default=3000, help=f"full-batch steps {D}")
    p.add_argument("--lr", type=_positive_float, default=0.03, help=f"learning rate {D}")
    p.add_argument("--solver", choices=list(OPTIMIZERS), default="adam", help=f"optimizer {D}")
    p.add_argument("--seed", type=_seed, default=0, help=f"initial weights' seed {D}")
    p.add_argument("--dtype", choices=list(DTYPES), default="float64", help=D)
    p.add_argument("--dpi", type=_dpi, default=100, help=f"dots per inch, 10 to 1200 {D}")
    _backend_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "train",
        help="train on a CSV/.npz/.npy table (default: scikit-learn's digits; without "
        "scikit-learn, a synthetic spirals set)",
    )
    p.add_argument(
        "data",
        nargs="?",
        metavar="DATA",
        help="CSV, .npz (X, y) or .npy file (default: scikit-learn's digits, else spirals)",
    )
    p.add_argument(
        "--target",
        type=_columns,
        default=[],
        help='target column(s) of a CSV, required there: a,b ("c, d": a name with a comma)',
    )
    p.add_argument(
        "--features",
        type=_columns,
        default=None,
        help="CSV feature columns, a,b,c (default: every other column)",
    )
    p.add_argument(
        "--task",
        choices=["classification", "regression"],
        default=None,
        help="default: classification for labels or few integer values",
    )
    p.add_argument(
        "--hidden",
        type=_hidden,
        default=[64, 64],
        help="hidden layer sizes, e.g. 64,64; '' for none (default: 64,64)",
    )
    p.add_argument("--activation", choices=activations, default="tanh", help=D)
    p.add_argument(
        "--output",
        choices=["auto", *OUTPUTS],
        default="auto",
        help="auto: softmax for classes (logistic for two or for several targets), "
        "identity for numbers (default: %(default)s)",
    )
    p.add_argument("--solver", choices=list(OPTIMIZERS), default="adam", help=D)
    p.add_argument("--epochs", type=_positive_int, default=100, help=D)
    p.add_argument("--batch-size", type=_batch_size, default=64, help=f"an int, or full {D}")
    p.add_argument("--lr", type=_positive_float, default=0.001, help=f"learning rate {D}")
    p.add_argument("--alpha", type=_nonneg_float, default=0.0, help=f"L2 penalty {D}")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help=D)
    p.add_argument("--seed", type=_seed, default=0, help=D)
    p.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.1,
        help="share of rows held out and scored (default: %(default)s)",
    )
    p.add_argument(
        "--save", type=_out_file, metavar="MODEL", help="write the model (e.g. model.npz)"
    )
    p.add_argument(
        "--plot",
        type=_picture_file,
        metavar="PNG",
        help="write loss and validation curves (.png added to a name without a suffix)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    _backend_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict a table with a saved model, as CSV")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("data", metavar="DATA", help="CSV, .npz (X) or .npy file")
    p.add_argument("--out", type=_out_file, help="CSV file (default: standard output)")
    _backend_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="score a saved model on a labelled table")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("data", metavar="DATA", help="CSV, .npz (X, y) or .npy file with targets")
    p.add_argument("--target", type=_columns, default=None, help="default: as trained")
    _backend_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="versions, backends, CUDA devices, BLAS")
    p.set_defaults(func=cmd_info)
    return parser


def _to_devnull(stream: Any) -> None:
    """Point ``stream``'s file descriptor at the null device."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, stream.fileno())
    finally:
        os.close(null)


class _QuietOnBrokenPipe:
    """Standard output that goes to the null device once its reader has gone
    (``xpmlp train --save m.npz | head -1``): the command still finishes its work."""

    def __init__(self, stream: Any):
        self._stream = stream

    def _silence(self) -> None:
        _to_devnull(self._stream)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._silence()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    stdout = sys.stdout
    if hasattr(stdout, "fileno"):
        sys.stdout = _QuietOnBrokenPipe(stdout)
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # argparse names the top-level help; the command's lists the options
            where = f"{parser.prog} {args.command}" if args.command else parser.prog
            raise CLIError(f"unrecognized arguments: {' '.join(unknown)} (see '{where} --help')")
        if args.command is None:
            parser.print_help()
            return 0
        with np.errstate(all="ignore"):  # a diverging run ends in one line, not warnings
            return args.func(args)
    except KeyboardInterrupt:
        print("xpmlp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # a write that bypassed the wrapper
        _to_devnull(stdout)
        return 1
    except ERRORS as exc:
        if os.environ.get("XPMLP_DEBUG"):
            raise
        if isinstance(exc, OSError) and exc.filename is not None:
            message = f"{exc.strerror or one_line(exc)}: {exc.filename}"
        else:
            message = one_line(exc)
        print(f"xpmlp: error: {message}", file=sys.stderr)
        if isinstance(exc, FloatingPointError):  # training diverged
            return 1
        return exc.code if isinstance(exc, CLIError) else 2
    finally:
        sys.stdout = stdout
