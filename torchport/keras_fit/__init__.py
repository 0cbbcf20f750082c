"""`torchport fit`: a Keras model file trained as Keras' `model.fit` trains it, on the one engine.

`compile.py`: the file's compile settings -> optimizer, loss, metrics; `data.py`: the `.npz`, checked, as
loaders; `run.py`: the command. (Not named `fit`: `torchport.fit` is the engine's function.)
"""
from .data import check_fits_model, load_npz, make_loaders
from .run import FitConfig, Setup, run, setup

__all__ = ["FitConfig", "Setup", "run", "setup", "load_npz", "check_fits_model", "make_loaders"]
