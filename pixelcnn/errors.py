"""The errors of loading a model, in a module of their own so that weights.py and hub.py can both raise them."""


class ModelLoadError(ValueError):
    """A model could not be loaded; the message names the file and the problem."""
