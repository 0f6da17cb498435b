"""Hugging Face Hub access through huggingface_hub: download (cached) and push."""

import re
import sys
from pathlib import Path

from .errors import ModelLoadError

MODEL_FILES = ["config.json", "model.safetensors"]
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(name))


def download(repo_id: str, revision: str | None = None) -> Path:
    """Download a model's files from the Hub (or take them from the cache); return the folder.

    Offline (HF_HUB_OFFLINE) or unreachable (no connection, a timeout): a cached copy is used,
    with a one-line notice on stderr; without one, the error says so in one line. A repo or
    revision not found, a token refused (401, 403) and a server error (5xx) are one-line errors
    of their own, and the cache is not used: it would hide them. Any other exception is a bug,
    and keeps its traceback.
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)
    from huggingface_hub.utils import httpx  # the client's HTTP library (httpx2)

    def cached() -> Path | None:
        try:
            return Path(snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES,
                                          local_files_only=True))
        except LocalEntryNotFoundError:
            return None

    try:
        # Asked first because snapshot_download falls back to the cache silently when the Hub is down.
        HfApi().repo_info(repo_id, revision=revision, timeout=10)
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES))
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:  # a GatedRepoError is a RepositoryNotFoundError
        raise ModelLoadError(f"{repo_id}: not found on the Hub or not accessible ({type(e).__name__})") from None
    except HfHubHTTPError as e:  # the Hub answered, with an error
        status = e.response.status_code
        said = " ".join((e.server_message or "").split())[:200] or type(e).__name__
        if status in (401, 403):
            why = f"the Hub refused the token ({status}: {said}); check HF_TOKEN or `hf auth login`"
        elif status >= 500:
            why = f"the Hub had a server error ({status}: {said}); try again later"
        else:
            why = f"the Hub answered {status} ({said})"
        if cached() is not None:
            why += "; HF_HUB_OFFLINE=1 loads the cached copy"
        raise ModelLoadError(f"{repo_id}: {why}") from None
    except (OfflineModeIsEnabled, httpx.TransportError, LocalEntryNotFoundError) as e:  # offline, unreachable, timeouts
        why = "HF_HUB_OFFLINE is set" if isinstance(e, OfflineModeIsEnabled) else type(e).__name__
    folder = cached()
    if folder is None:
        raise ModelLoadError(f"{repo_id}: the Hub cannot be reached ({why}) and no cached copy exists")
    print(f"pixelcnn: the Hub cannot be reached ({why}); using the cached copy of {repo_id}", file=sys.stderr)
    return folder


def push(repo_id: str, folder: str | Path, extra_files: dict[str, str | Path] | None = None,
         private: bool = False, token: str | None = None) -> str:
    """Create repo_id if needed and upload a weights folder, plus extra files, in one commit.

    Args:
        repo_id: "user/repo" on the Hub.
        folder: its files go to the root of the repo.
        extra_files: path in the repo -> local file, e.g. {"results/samples.png": ...}.
        token: None takes HF_TOKEN or the saved login, as huggingface_hub does.
    Returns:
        The URL of the commit.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private)
    folder = Path(folder)
    ops = [CommitOperationAdd(path_in_repo=str(p.relative_to(folder)), path_or_fileobj=str(p))
           for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    ops += [CommitOperationAdd(path_in_repo=dst, path_or_fileobj=str(src))
            for dst, src in (extra_files or {}).items()]
    info = api.create_commit(repo_id, operations=ops, commit_message=f"Upload {folder.name}")
    return info.commit_url
