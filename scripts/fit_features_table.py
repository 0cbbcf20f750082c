"""The float64 table of `torchport fit` against Keras' `fit` on what Keras users train beyond one input and
one output: each case of parity_tests/test_fit_keras_features.py, its worst row (History, step losses and
weights, relative) and its History's names. `python scripts/fit_features_table.py`; needs TensorFlow."""
import sys
import tempfile
from pathlib import Path

import numpy as np

from torchport.keras_env import import_keras

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity_tests"))


def main():
    keras = import_keras()
    import test_fit_keras_features as t

    from torchport.parity import model as pm
    from torchport.porting.plan import plan_file

    tmp = Path(tempfile.mkdtemp(prefix="torchport-fit-table-"))
    rng = np.random.default_rng(1)
    weighted = {"x_train": rng.normal(size=(150, 6)), "y_train": rng.integers(0, 3, 150),
                "x_val": rng.normal(size=(37, 6)), "y_val": rng.integers(0, 3, 37)}
    cases = [
        ("3 inputs, 2 outputs, loss/metrics lists, loss_weights, RMSprop", lambda k: t.ticket_model(k, "list"), None,
         None),
        ("3 inputs, 2 outputs, dicts, loss_weights, weighted_metrics, Adam", lambda k: t.ticket_model(k, "dict"), None,
         None),
        ("sample_weight, weighted_metrics, Adam", lambda k: t._classifier(k, True),
         {**weighted, "sample_weight": rng.uniform(0, 2, 150)}, None),
        ("class_weight, Adam", lambda k: t._classifier(k, False), weighted, {0: 1.0, 1: 3.5, 2: 0.25}),
        ("CNN: L2, L1, L1L2; MaxNorm, NonNeg, UnitNorm, MinMaxNorm; SGD", lambda k: t._regularized(k, "cnn"), None,
         None),
        ("Embedding + LSTM: L2, L1 on recurrent; MaxNorm, NonNeg; Adam", lambda k: t._regularized(k, "lstm"), None,
         None),
    ]
    print("| case | steps | worst row | max rel diff | History names |")
    print("|---|---|---|---|---|")
    for i, (name, build, data, class_weight) in enumerate(cases):
        path = t._saved(keras, tmp, f"case{i}", build)
        rows = pm.check_training(plan_file(path), path, data, epochs=2, batch=16, class_weight=class_weight)
        worst = max(rows, key=lambda r: r.diff)
        names = sorted(r.check.split(": ", 1)[1] for r in rows if "float64: " in r.check and " steps" not in r.check
                       and "after each" not in r.check)
        steps = rows[0].check.split("of ")[1].split(" ")[0]
        print(f"| {name} | {steps} | {worst.check.split(': ', 1)[1][:40]} | {worst.diff:.1e} | "
              f"{', '.join(names)} |")


if __name__ == "__main__":
    main()
