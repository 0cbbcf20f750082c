"""Build the zoo of Keras tutorial models and the keras.io examples with Keras, port each file, and print the
parity against Keras, the time to port and the peak memory. `python scripts/port_zoo.py [--out DIR]`.

`--applications [NAME ...]`: keras.applications instead, at their native input size and 1000 classes (the
first member of each family by default; `all` for every member): forward float32 (on the logits' scale: the
softmax is asked off) and float64, the port's time without and with `import torch`, its peak RSS. Needs
TensorFlow."""
import argparse
import os
import subprocess
import sys
import tempfile

from torchport.keras_env import import_keras


def port_in_subprocess(path: str) -> tuple[float, float, float]:
    """(seconds to port, seconds with `import torch`, peak RSS in MB) of `load_keras(path)` in a fresh
    interpreter without TensorFlow. The peak is VmHWM (ru_maxrss would include the forking parent's)."""
    code = ("import re, time, sys; t0 = time.perf_counter(); import torch; from torchport.porting import load_keras; "
            "t1 = time.perf_counter(); load_keras(sys.argv[1]); t2 = time.perf_counter(); "
            "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
            "print(t2 - t1, t2 - t0, hwm / 1024)")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True).stdout
    port_s, total_s, mb = out.split()
    return float(port_s), float(total_s), float(mb)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=None, help="where to keep the .keras files (default: a temp folder)")
    p.add_argument("--applications", nargs="*", default=None, metavar="NAME",
                   help="keras.applications members (none given: the first of each family; 'all': every one)")
    args = p.parse_args()
    keras = import_keras()
    if args.applications is not None:
        return applications(keras, args.applications, args.out)
    import tf_keras

    from torchport.originals.keras_zoo import KERAS_IO, ZOO, build
    from torchport.parity import model as pm
    from torchport.porting.plan import plan_file

    folder = args.out or tempfile.mkdtemp(prefix="torchport-zoo-")
    os.makedirs(folder, exist_ok=True)
    files = {}
    for name in [*ZOO, *KERAS_IO]:
        model = build(keras, name)
        files[f"{name}.keras"] = os.path.join(folder, f"{name}.keras")
        model.save(files[f"{name}.keras"])
        if name == "mnist_convnet":
            files[f"{name}.h5 (Keras 3 legacy)"] = os.path.join(folder, f"{name}.h5")
            model.save(files[f"{name}.h5 (Keras 3 legacy)"])
    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    text = tf_keras.Sequential([tf_keras.Input((12,), dtype="int32"), L.Embedding(50, 8, mask_zero=True),
                                L.Bidirectional(L.GRU(6)), L.Dense(3, activation="softmax")])
    files["text_bigru.h5 (tf.keras 2)"] = os.path.join(folder, "text_bigru_tf_keras2.h5")
    text.save(files["text_bigru.h5 (tf.keras 2)"])

    print("| model file | layers | params | forward f32 | forward f64 | gradients f32 | port (with imports) "
          "| peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for label, path in files.items():
        plan = plan_file(path)
        results = pm.port_checks(plan, path)
        seconds, total, mb = port_in_subprocess(path)
        diffs = [f"{r.diff:.1e}{'' if r.passed else ' FAIL'}" for r in results[:3]]
        print(f"| {label} | {len(plan.graph.calls)} | {plan.param_count():,} | {' | '.join(diffs)} | "
              f"{seconds:.3f} s ({total:.1f} s) | {mb:.0f} MB |")
    print(f"\nfiles in {folder}")


def applications(keras, names: list[str], out: str | None) -> None:
    from torchport.originals.keras_zoo import APPLICATIONS, application
    from torchport.parity import model as pm
    from torchport.porting.plan import plan_file

    if not names:
        names = [members[0] for members, _ in APPLICATIONS.values()] + ["ResNet50"]
    elif names == ["all"]:
        names = [m for members, _ in APPLICATIONS.values() for m in members]
    folder = out or tempfile.mkdtemp(prefix="torchport-applications-")
    os.makedirs(folder, exist_ok=True)
    print("| model | input | params | forward f32 (logits) | forward f64 | port (with import torch) | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(names):
        model = application(keras, name, None, classifier_activation=None)
        path = os.path.join(folder, f"{name}.keras")
        model.save(path)
        side = model.input_shape[1]
        del model
        plan = plan_file(path)
        session = pm.Session(plan, path, batch=2)
        f32 = pm.check_forward(plan, path, "float32", session=session)
        session.release("float32")
        f64 = pm.guarded("forward float64", lambda p=plan, f=path, s=session: pm.check_forward(p, f, "float64",
                                                                                            session=s))[0]
        session.release()
        seconds, total, mb = port_in_subprocess(path)
        cells = [f"{r.diff:.1e}{'' if r.passed else ' FAIL'}" if not r.not_run else "not run" for r in (f32, f64)]
        print(f"| {name} | {side}x{side} | {plan.param_count():,} | {' | '.join(cells)} | {seconds:.2f} s "
              f"({total:.1f} s) | {mb:.0f} MB |", flush=True)
        del plan, session
    print(f"\nfiles in {folder}")


if __name__ == "__main__":
    main()
