"""`torchport parity --model` on the real models its verdicts are calibrated on, each in its own process
(wall time and peak RSS), ResNet50 through `torchport port` as a user runs it, and the planted bugs that must
still turn a verdict red. Needs TensorFlow; minutes on a 2-core CPU.

    python scripts/parity_real_models.py [--out DIR] [--only NAME ...]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = """
import re, sys, time
t0 = time.perf_counter()
from torchport.cli import main
code = main(sys.argv[1:])
hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))
print(f"RESULT {code} {time.perf_counter() - t0:.1f} {hwm / 1024:.0f}")
"""
RUNS = [  # (label, model, command): the models, compiled as their sources compile them
    ("keras.io timeseries FCN (Adam)", "timeseries_fcn", ["parity", "--model"]),
    ("Conv2D -> BatchNorm -> GAP -> Dense (SGD)", "conv_bn", ["parity", "--model"]),
    ("MobileNetV2 alpha 0.35, 96x96, 10 classes (SGD momentum), batch 32", "mobilenet_v2", ["parity", "--model"]),
    ("MobileNetV2, the same, training at batch 8", "mobilenet_v2", ["parity", "--batch-size", "8", "--model"]),
    ("ResNet50 as built (224x224, 1000-way softmax): `torchport port`", "resnet50", ["port"]),
]


def run_cli(argv: list[str]) -> tuple[int, float, float, str]:
    """(exit code, seconds, peak RSS MB, output) of `torchport ARGV` in a fresh interpreter."""
    p = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, cwd=ROOT)
    m = re.search(r"RESULT (-?\d+) ([\d.]+) (\d+)", p.stdout)
    if m is None:
        raise SystemExit(p.stdout + p.stderr)
    return int(m[1]), float(m[2]), float(m[3]), p.stdout


def planted(files: dict) -> list[str]:
    """Each planted bug on the models the issue names, and the rows it turns red."""
    sys.path.insert(0, os.path.join(ROOT, "parity_tests"))
    from planted_bugs import adam_epsilon_inside_the_root, batchnorm_momentum_off, depthwise_kernel_transposed

    from torchport.parity import model as pm
    from torchport.porting.plan import plan_file

    cases = [("BatchNorm momentum off by 1e-3", "timeseries_fcn", batchnorm_momentum_off, "training"),
             ("BatchNorm momentum off by 1e-3", "mobilenet_v2", batchnorm_momentum_off, "training"),
             ("Adam epsilon inside the root", "timeseries_fcn", adam_epsilon_inside_the_root, "training"),
             ("depthwise kernel transposed", "mobilenet_v2", depthwise_kernel_transposed, "forward")]
    lines = ["| planted bug | model | rows red | first red row | max diff | tolerance |", "|---|---|---|---|---|---|"]
    for bug, name, plant, check in cases:
        path = files[name]
        with plant():
            plan = plan_file(path)
            rows = pm.check_training(plan, path) if check == "training" else pm.compare(plan, path, "float32")
        red = [r for r in rows if not r.passed]
        first = red[0] if red else None
        lines.append(f"| {bug} | {name} | {len(red)} of {len(rows)} | {first.check if first else 'none'} | "
                     f"{first.diff:.3g} | {first.tol:.3g} |" if first else f"| {bug} | {name} | 0 of {len(rows)} | "
                     "NONE: the bug went unseen | | |")
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None, help="where to keep the .keras files and outputs (default: a temp folder)")
    p.add_argument("--only", nargs="+", default=None, help="run only these models (timeseries_fcn, conv_bn, ...)")
    p.add_argument("--no-planted", action="store_true", help="skip the planted bugs")
    args = p.parse_args()
    from torchport.keras_env import import_keras
    from torchport.originals.keras_zoo import REAL, build

    keras = import_keras()
    folder = args.out or tempfile.mkdtemp(prefix="torchport-real-")
    os.makedirs(folder, exist_ok=True)
    files = {}
    for name in REAL:
        files[name] = os.path.join(folder, f"{name}.keras")
        if not os.path.exists(files[name]):
            build(keras, name).save(files[name])
    print("| model | command | verdict | rows | seconds | peak RSS |", "|---|---|---|---|---|---|", sep="\n")
    for label, name, command in RUNS:
        if args.only and name not in args.only:
            continue
        argv = [*command, files[name]] + (["--out", os.path.join(folder, f"{name}-port")] if command == ["port"]
                                          else [])
        code, seconds, mb, out = run_cli(argv)
        verdict = re.search(r"(\d+ passed, \d+ failed[^\n]*)", out)
        print(f"| {label} | `torchport {' '.join(command)}` | {'green' if code == 0 else 'RED'} | "
              f"{verdict[1] if verdict else '-'} | {seconds:.1f} | {mb:.0f} MB |")
        with open(os.path.join(folder, f"{name}{'-b8' if '8' in command else ''}.txt"), "w") as f:
            f.write(out)
    if not args.no_planted:
        print("\n" + "\n".join(planted(files)))
    print(f"\nfiles and each table in {folder}")


if __name__ == "__main__":
    main()
