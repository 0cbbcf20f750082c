"""The callbacks Keras users pass to `model.fit`, with Keras 3's semantics, one module each (as Keras' own
`callbacks/`): EarlyStopping, ReduceLROnPlateau, ModelCheckpoint's save_best_only, CSVLogger, TensorBoard.
Each keeps its state in `state_dict()`, so a checkpointed run resumes them bit for bit."""
from .csv_logger import CSVLogger
from .early_stopping import EarlyStopping
from .model_checkpoint import SaveBest
from .reduce_lr_on_plateau import ReduceLROnPlateau
from .tensorboard import TensorBoard

__all__ = ["CSVLogger", "EarlyStopping", "ReduceLROnPlateau", "SaveBest", "TensorBoard"]
