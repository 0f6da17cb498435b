"""PixelCNN on binarized MNIST: masked convolutions, models, sampling, data, weights and Hub I/O."""

from .layers import MaskedConv2d, causal_mask
from .model import PixelCNN, PixelCNNConfig
from .sampling import SampleStep, Surprise, probabilities, sample, sample_plain, sample_stream, surprise
from .weights import ModelLoadError, list_models, load_model, save_model

__all__ = ["MaskedConv2d", "causal_mask", "PixelCNN", "PixelCNNConfig", "sample",
           "sample_plain", "sample_stream", "SampleStep", "probabilities", "surprise", "Surprise",
           "ModelLoadError", "list_models", "load_model", "save_model"]
