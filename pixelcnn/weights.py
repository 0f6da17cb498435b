"""Saving and loading models: config.json + model.safetensors in a folder. Nothing is unpickled."""

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .ensemble import MEMBER_TYPES, Ensemble, EnsembleConfig
from .errors import ModelLoadError
from .hub import download, is_repo_id

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "gated-pixelcnn-5x5-48x2"  # the best model, the app's: two 48-channel gated models as one

# model_type in config.json -> (config class, model class)
MODEL_TYPES = MEMBER_TYPES | {"ensemble": (EnsembleConfig, Ensemble)}


_UMASK = os.umask(0)  # read the process's umask (the only way is to set it) ...
os.umask(_UMASK)  # ... and put it back


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path), then rename tmp_path onto path: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private (0600); give it a new file's usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def save_model(model: torch.nn.Module, folder: str | Path) -> Path:
    """Write config.json and model.safetensors into folder, each atomically."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(state, tmp))
    write_json(folder / "config.json", asdict(model.config))
    return folder


def build_model(config: dict) -> torch.nn.Module:
    """A freshly initialised model from a config dict (as read from config.json)."""
    model_type = config.get("model_type", "pixelcnn")
    if model_type not in MODEL_TYPES:
        raise ModelLoadError(f"unknown model_type {model_type!r}; known: {', '.join(MODEL_TYPES)}")
    config_cls, model_cls = MODEL_TYPES[model_type]
    try:
        return model_cls(config_cls(**config))
    except (TypeError, ValueError) as e:  # an unknown key; a size that is not a positive integer
        raise ModelLoadError(f"bad config for {model_type}: {e}") from None


def load_folder(folder: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a model from a folder holding config.json and model.safetensors."""
    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{config_path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_path}: expected a JSON object")
    try:
        model = build_model(config)
    except ModelLoadError as e:
        raise ModelLoadError(f"{config_path}: {e}") from None
    try:
        state = load_file(weights_path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"{weights_path}: corrupt or not a safetensors file ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                 f"wrong shapes {wrong}" if wrong else ""]
        raise ModelLoadError(
            f"{weights_path} does not match {config_path.name}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def local_folder(name: str | Path, weights_dir: str | Path | None = None) -> Path | None:
    """The folder of a local model: a folder, a name in weights_dir (default: the repo's weights/), or
    "weights/NAME" from another working directory. None where there is none (a Hub repo id, say)."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    for folder in (Path(name), weights_dir / name, weights_dir.parent / name):
        if (folder / "model.safetensors").is_file():
            return folder
    return None


def weights_sha256(folder: str | Path) -> str:
    """The SHA-256 of a model folder's weights: which weights a figure was measured on."""
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()


def list_models(weights_dir: str | Path | None = None) -> list[str]:
    """Names of the model folders in weights_dir (default: the repo's weights/)."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR)
    if not weights_dir.is_dir():
        return []
    return sorted(p.name for p in weights_dir.iterdir() if (p / "model.safetensors").is_file())


def load_model(name: str | Path | None = None, device: str | torch.device = "cpu",
               revision: str | None = None) -> torch.nn.Module:
    """Load a model, in eval mode.

    Args:
        name: None for the default shipped model; a local folder ("weights/pixelcnn"); the
            name of a folder in weights/ ("pixelcnn"); or a Hugging Face Hub repo id
            ("user/repo"), downloaded and cached.
        device: where to put the model.
        revision: a Hub branch, tag or commit (Hub repo ids only).
    """
    if name is None:
        name = DEFAULT_MODEL
    path = Path(name)
    # A folder here wins only if it holds a model: from the repo root, "pixelcnn" is also the package.
    if path.is_dir() and any((path / f).is_file() for f in ("config.json", "model.safetensors")):
        return load_folder(path, device)
    if (WEIGHTS_DIR / path).is_dir():
        return load_folder(WEIGHTS_DIR / path, device)
    if path.parts[:1] == (WEIGHTS_DIR.name,) and (WEIGHTS_DIR.parent / path).is_dir():
        return load_folder(WEIGHTS_DIR.parent / path, device)  # "weights/NAME" from another working directory
    if path.is_dir():
        return load_folder(path, device)  # says which file is missing
    # A name that exists here, or that starts with the weights folder ("weights/typo"), ".", ".." or
    # "/", is a local path, mistyped perhaps: a Hub repo id it is not.
    if path.exists() or str(name).startswith(("/", "./", "../", f"{WEIGHTS_DIR.name}/")):
        raise ModelLoadError(f"{name}: missing: no model folder there (config.json and model.safetensors); "
                             f"the models in {WEIGHTS_DIR}: {', '.join(list_models()) or 'none'}")
    if is_repo_id(str(name)):
        return load_folder(download(str(name), revision=revision), device)
    raise ModelLoadError(f"{name}: no such folder, nor a folder in {WEIGHTS_DIR}, nor a Hub repo id (user/repo)")
