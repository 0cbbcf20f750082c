"""One error type per family; `cli.py` turns each into one line and an exit code."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line: the first line of its message, or its type's name when it has none."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def described(e: BaseException, limit: int = 200) -> str:
    """`Type: first line` of an exception (just `Type` when it has no message): why something failed, in a line."""
    line = first_line(e, limit)
    return line if line == type(e).__name__ else f"{type(e).__name__}: {line}"


class TorchportError(Exception):
    """Base of every error a user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(TorchportError):
    """Bad arguments or option values."""

    exit_code = 2


class DataError(TorchportError):
    """Missing, truncated, corrupt or malicious data files."""


class CheckpointError(TorchportError):
    """A checkpoint that cannot be written or loaded."""


class NonFiniteLossError(TorchportError):
    """Training produced a NaN or infinite loss (Keras' TerminateOnNaN)."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"non-finite loss at epoch {epoch + 1}, step {step + 1}: training stopped")
        self.epoch, self.step = epoch, step


class CudaGraphError(TorchportError):
    """A failed CUDA graph capture left CUDA in a state the run cannot continue from."""


class ModelFileError(DataError):
    """A Keras model file that cannot be read: not a model, truncated, corrupt, inconsistent or hostile."""


class WeightsOnlyError(ModelFileError):
    """A Keras weights file (`model.save_weights`) where a model file was expected: no config to port from."""


class MissingFileError(ModelFileError):
    """A path that does not name a file: a usage mistake (exit 2)."""

    exit_code = 2


class UnsupportedError(TorchportError):
    """A Keras model torchport does not port: the message names the layer, its class and what is missing."""
