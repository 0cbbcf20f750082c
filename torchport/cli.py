"""`torchport train mnist|cifar10`, `torchport port`, `torchport bench`, `torchport parity`.

Every expected failure is a TorchportError: one line on stderr, exit 2 for usage errors and 1 for the
rest, and no traceback unless --debug.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import warnings

from .errors import TorchportError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage plus a line and exits; we want one line
        raise UsageError(f"{self.prog}: {message}")


def _number(parse, ok, expected: str):
    """An argparse type: `parse` the text, then require `ok(value)`; else one line saying what was expected."""
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return convert


positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive finite number")
unit_float = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
open_unit_float = _number(float, lambda v: 0 < v < 1, "a number in (0, 1)")
any_int = _number(int, lambda v: True, "a whole number")


def class_weights(text: str) -> dict[int, float]:
    """--class-weight: a JSON object of class id -> weight, as Keras' class_weight ({"0": 1.0, "1": 5.0})."""
    import json

    try:
        mapping = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a JSON object of class id -> weight, got {text!r}") from None
    if not isinstance(mapping, dict) or not mapping:
        raise argparse.ArgumentTypeError(f"expected a JSON object of class id -> weight, got {text!r}")
    out = {}
    for key, weight in mapping.items():
        try:
            cls = int(key)
        except ValueError:
            raise argparse.ArgumentTypeError(f"class {key!r} is not a whole number") from None
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise argparse.ArgumentTypeError(f"class {key}: weight {weight!r} is not a finite number >= 0")
        out[cls] = float(weight)
    return out


def resolve_device(name: str):
    import torch

    if name == "auto":
        from .device import get_default_device
        return get_default_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available here (use --device cpu or auto)")
    return torch.device(name)


def _run_flags(p: argparse.ArgumentParser, defaults, seed_help: str, derived_out: str | None = None) -> None:
    """The flags of the settings every training run shares (`run_config.RunConfig`), with this run's defaults.
    `derived_out`: the default output folder as the help shows it, when it is derived later from the input."""
    p.add_argument("--out", default=None if derived_out else defaults.out,
                   help=f"output folder (default: {derived_out or defaults.out})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=any_int, default=defaults.seed, help=f"{seed_help} ({defaults.seed})")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=defaults.verbose,
                   help="0 silent, 1 progress bar, 2 one line per epoch (Keras' fit)")
    p.add_argument("--checkpoint-dir", default=None, help="write a checkpoint after every epoch here "
                   "(e.g. a mounted Google Drive folder)")
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint")
    p.add_argument("--keep-checkpoints", type=positive_int, default=defaults.keep_checkpoints, metavar="K",
                   help=f"keep the newest K ({defaults.keep_checkpoints})")


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="folder holding the dataset (default: cache, download, "
                   "or the bundled sample when offline)")


def _no_cuda_graphs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="on CUDA, launch the step's kernels one by one instead of replaying a CUDA graph")


def build_parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)  # every command's
    debug.add_argument("--debug", action="store_true", help="show tracebacks")
    parser = _Parser(prog="torchport", description="Keras models and tutorials on one PyTorch engine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="run a tutorial port")
    which = train.add_subparsers(dest="tutorial", required=True, parser_class=_Parser)

    from .cifar10 import Cifar10Config
    from .keras_fit.run import FitConfig
    from .mnist import MnistConfig

    M, C, FIT = MnistConfig(), Cifar10Config(), FitConfig(model="", data="")  # the ports' own defaults

    m = which.add_parser("mnist", help="the PyTorch MNIST feed-forward tutorial", parents=[debug])
    _data_dir(m)
    _run_flags(m, M, "seed for the split, init and shuffling")
    m.add_argument("--epochs", type=positive_int, nargs="+", default=M.epochs, help="epochs per phase (5 5)")
    m.add_argument("--lr", type=positive_float, nargs="+", default=M.lr, help="lr per phase (0.5 0.1)")
    m.add_argument("--batch-size", type=positive_int, default=M.batch_size)
    m.add_argument("--val-batch-size", type=positive_int, default=M.val_batch_size)

    c = which.add_parser("cifar10", help="the Keras CIFAR-10 CNN tutorial", parents=[debug])
    _data_dir(c)
    _run_flags(c, C, "seed for init, shuffling and dropout")
    c.add_argument("--epochs", type=positive_int, default=C.epochs)
    c.add_argument("--batch-size", type=positive_int, default=C.batch_size)
    c.add_argument("--lr", type=positive_float, default=C.lr)
    c.add_argument("--momentum", type=unit_float, default=C.momentum)
    c.add_argument("--legacy-decay", action="store_true",
                   help="apply decay=lr/epochs per batch as Keras 2 did (Keras 3, the default, ignores it)")
    c.add_argument("--amp", choices=["bf16", "fp16"], default=None,
                   help="mixed precision (off by default: it breaks parity with Keras)")
    c.add_argument("--tf32", action="store_true", help="allow TF32 on Ampere+ GPUs (off: it breaks parity)")
    c.add_argument("--compile", nargs="?", const="default", choices=["default", "reduce-overhead"], default=None,
                   help="torch.compile the model (reduce-overhead: CUDA graphs); falls back to eager")
    _no_cuda_graphs(c)

    b = sub.add_parser("bench", help="time torchport against Keras and the FLOP floor on this machine",
                       parents=[debug])
    b.add_argument("--cifar-dir", default=None, help="CIFAR-10 folder (default: cache or bundled sample)")
    b.add_argument("--mnist-dir", default=None, help="MNIST folder for the tutorial-run comparison (skipped if absent)")
    b.add_argument("--out", default="runs/bench")
    b.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b.add_argument("--quick", action="store_true", help="a short smoke version")
    b.add_argument("--no-keras", action="store_true", help="skip the Keras side")

    par = sub.add_parser("parity", help="check torchport against the installed Keras and print the table",
                         parents=[debug])
    par.add_argument("--model", default=None, help="a Keras model file to check (default: the two seed ports)")
    par.add_argument("--data", default=None, help="with --model: an .npz for the training run (default: random "
                     "data of the model's input shape)")
    par.add_argument("--batch-size", type=positive_int, default=32, help="with --model: the training run's batch "
                     "size (32, Keras' default)")
    _converters_flag(par)

    f = sub.add_parser("fit", help="train a Keras model file as Keras' model.fit would, on torchport's engine",
                       parents=[debug])
    f.add_argument("model", help="the Keras model file: .keras (Keras 3) or .h5 (Keras 3 or tf.keras 2)")
    f.add_argument("--data", required=True, help="an .npz with x_train, y_train [, x_val, y_val or x_test, y_test] "
                   "[, sample_weight] in Keras' layout (several inputs/outputs: x_train_<input>, y_train_<output>), "
                   "or a folder of .npy files by the same names (x_train-00000.npy, ...: shards)")
    _run_flags(f, FIT, "seed for shuffling and dropout", derived_out="runs/fit/<file name>")
    f.add_argument("--epochs", type=positive_int, default=FIT.epochs)
    f.add_argument("--batch-size", type=positive_int, default=FIT.batch_size)
    f.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep the sample order every epoch")
    f.add_argument("--validation-split", type=open_unit_float, default=None, metavar="F",
                   help="validate on the last fraction F of x_train (as Keras; x_test/y_test take precedence)")
    _no_cuda_graphs(f)
    f.add_argument("--optimizer", default=None, help="override the file's optimizer (SGD, Adam, AdamW, RMSprop, "
                   "Adagrad, Adadelta, Adamax, Nadam), with Keras' defaults")
    f.add_argument("--lr", type=positive_float, default=None, help="override the learning rate")
    f.add_argument("--loss", default=None, help="override the loss (e.g. categorical_crossentropy, mse)")
    f.add_argument("--metrics", nargs="+", default=None, help="override the metrics (e.g. accuracy mae); with "
                   "several outputs, each output's")
    f.add_argument("--class-weight", type=class_weights, default=None, metavar="JSON",
                   help='weight the loss by class, as Keras\' class_weight: \'{"0": 1, "1": 5}\'')
    f.add_argument("--stream", action="store_true",
                   help="keep the inputs on the host (memory-mapped) and move one batch at a time; automatic when "
                        "they exceed half the free memory of the device")
    f.add_argument("--validation-freq", type=positive_int, default=1, metavar="N",
                   help="validate after every N-th epoch (Keras' validation_freq)")
    from .keras_fit.callback_flags import pairs
    for flag, example, what in (
            ("--early-stopping", "monitor=val_loss,patience=3,restore_best_weights=true", "EarlyStopping"),
            ("--reduce-lr-on-plateau", "monitor=val_loss,factor=0.5,patience=2,min_lr=0.0001", "ReduceLROnPlateau"),
            ("--save-best", "monitor=val_loss", "ModelCheckpoint(save_best_only=True) writing best.weights.h5")):
        f.add_argument(flag, type=pairs(flag), nargs="?", const={}, default=None, metavar="K=V,...",
                       help=f"Keras' {what}, its arguments as key=value pairs (e.g. {example}); Keras' defaults "
                            "for the rest")
    f.add_argument("--csv-log", default=None, metavar="FILE", help="Keras' CSVLogger: one row per epoch")
    f.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="Keras' TensorBoard epoch scalars (needs the tensorboard package)")
    _converters_flag(f)

    pt = sub.add_parser("port", help="port a Keras model file (.keras or .h5) to readable PyTorch", parents=[debug])
    pt.add_argument("model", help="the Keras model file: .keras (Keras 3) or .h5 (Keras 3 or tf.keras 2)")
    pt.add_argument("--out", default=None, help="output folder (default: runs/port/<file name>)")
    pt.add_argument("--no-parity", action="store_true", help="skip the parity checks against Keras")
    pt.add_argument("--standalone", action="store_true", help="write keras_layers.py (the Keras semantics the "
                    "model uses) beside model.py, so that the port runs with torch alone")
    _converters_flag(pt)
    return parser


def _converters_flag(p) -> None:
    p.add_argument("--converters", nargs="+", default=None, metavar="FILE",
                   help="your converters for the model's own layer classes (README: Your own layers)")


def _validate(args) -> None:
    from .outputs import check_writable

    if args.command == "train" and args.tutorial == "mnist" and len(args.epochs) != len(args.lr):
        raise UsageError(f"--epochs has {len(args.epochs)} phases but --lr has {len(args.lr)}: "
                         "give one of each per phase")
    if args.command in ("port", "fit") and args.out is None:
        stem = os.path.splitext(os.path.basename(args.model))[0] or "model"
        args.out = os.path.join("runs", args.command, stem)
    if hasattr(args, "out"):
        check_writable(args.out)
    if getattr(args, "resume", False) and not args.checkpoint_dir:
        raise UsageError("--resume needs --checkpoint-dir: the folder the interrupted run wrote its checkpoints to")
    if getattr(args, "checkpoint_dir", None):
        check_writable(args.checkpoint_dir, "--checkpoint-dir")
    if hasattr(args, "device"):
        args.device = resolve_device(args.device)


def config_from_args(cls, args):
    """A port's config dataclass from the parsed arguments (the fields argparse knows; defaults otherwise)."""
    import dataclasses

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    if "device" in values:
        values["device"] = str(values["device"])
    return cls(**values)


def _run(args) -> int:
    _validate(args)
    if getattr(args, "converters", None):
        from .porting.user import load_converters
        load_converters(args.converters)
    if args.command == "train":
        if args.tutorial == "mnist":
            from .mnist import MnistConfig as Config, run
        else:
            from .cifar10 import Cifar10Config as Config, run
        run(config_from_args(Config, args))
    elif args.command == "bench":
        from .bench import main as bench_main
        return bench_main(args)
    elif args.command == "parity":
        from .parity import main as parity_main
        if (args.data or args.batch_size != 32 or args.converters) and not args.model:
            raise UsageError("--data, --batch-size and --converters go with --model: that model's checks")
        return parity_main(args.model, args.data, args.batch_size)
    elif args.command == "port":
        return _port(args)
    elif args.command == "fit":
        from .keras_fit.run import FitConfig, run
        run(config_from_args(FitConfig, args))
    return 0


def _port(args) -> int:
    import time

    from .parity.core import summary_line
    from .port import port

    t0 = time.perf_counter()
    ported = port(args.model, args.out, parity=not args.no_parity, log=lambda m: print(m, file=sys.stderr),
                  standalone=args.standalone)
    plan = ported.plan
    print(f"Ported {args.model} -> {args.out}/model.py (class {plan.cls}, {plan.param_count():,} parameters, "
          f"{time.perf_counter() - t0:.1f} s): {', '.join(ported.files)}")
    if ported.parity is not None:
        print(f"Parity against Keras: {summary_line(ported.parity)}")
    elif ported.parity_note:
        print(f"Parity against Keras: {ported.parity_note}: nothing to compare against.")
    return 0 if ported.passed else 1


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"torchport: warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    previous_showwarning = warnings.showwarning  # called from a notebook, the process goes on after us
    warnings.showwarning = _one_line_warnings
    try:
        args = build_parser().parse_args(argv)
        args.resume_hint = shlex.join(["torchport", *argv] + ([] if "--resume" in argv else ["--resume"]))
        return _run(args)
    except TorchportError as e:
        if debug:
            raise
        print(f"torchport: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("torchport: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_showwarning


if __name__ == "__main__":
    sys.exit(main())
