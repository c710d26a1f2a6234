"""Dense optimizers over the flat master-weight buffer, and the learning-rate scheduler."""

from .dense import (
    DENSE_OPTIMIZERS,
    AdaGradOptimizer,
    AdamOptimizer,
    DenseOptimizer,
    MomentumSGDOptimizer,
    NesterovOptimizer,
    SGDOptimizer,
    create_dense_optimizer,
)
from .scheduler import LearningRateScheduler, get_learning_rate_scheduler

__all__ = [
    "DENSE_OPTIMIZERS", "AdaGradOptimizer", "AdamOptimizer", "DenseOptimizer",
    "MomentumSGDOptimizer", "NesterovOptimizer", "SGDOptimizer", "create_dense_optimizer",
    "LearningRateScheduler", "get_learning_rate_scheduler",
]
