"""Training: the loop (epochs, validation, checkpoints, resume) and its distributed launcher."""

from ecgbio.training.loop import TrainResult, train

__all__ = ["TrainResult", "train"]
