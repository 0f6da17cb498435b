"""PixelCNN on binarized MNIST: masked convolutions, models, sampling, data, weights and Hub I/O, drawings."""

from .drawing import DrawingError, from_drawing, from_marked_drawing
from .layers import MaskedConv2d, causal_mask
from .gated import GatedPixelCNN, GatedPixelCNNConfig
from .ensemble import Ensemble, EnsembleConfig
from .model import PixelCNN, PixelCNNConfig
from .receptive import blind_spot, receptive_field
from .orders import ORIENTATIONS, orient, unorient
from .sampling import (DROPPED, SampleStep, Surprise, best_orientation, complete, complete_stream,
                       exact_orientation, label_nats, label_scores, marginal_nats, mean_nats, orders_nats,
                       orientation_nats, probabilities, sample, sample_plain, sample_stream, surprise)
from .weights import ModelLoadError, list_models, load_model, save_model

__all__ = ["MaskedConv2d", "causal_mask", "PixelCNN", "PixelCNNConfig", "GatedPixelCNN", "GatedPixelCNNConfig", "Ensemble", "EnsembleConfig",
           "receptive_field", "blind_spot", "sample",
           "sample_plain", "sample_stream", "SampleStep", "probabilities", "surprise", "Surprise",
           "label_nats", "label_scores", "marginal_nats", "mean_nats", "orders_nats", "orientation_nats", "DROPPED",
           "complete", "complete_stream",
           "best_orientation", "exact_orientation", "ORIENTATIONS", "orient", "unorient",
           "ModelLoadError", "list_models", "load_model", "save_model", "from_drawing", "from_marked_drawing",
           "DrawingError"]
