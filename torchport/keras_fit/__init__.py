"""`torchport fit`: a Keras model file trained as Keras' `model.fit` trains it, on the one engine.

`compile.py`: the file's compile settings -> optimizer, loss, metrics; `data.py`: the `.npz`, checked, as
loaders; `run.py`: the command (`FitConfig`, `setup`, `run`). Not named `fit`: `torchport.fit` is the
engine's function.
"""
