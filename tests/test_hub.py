"""Pushing to and loading from the Hub, against tests/fake_hub.py on 127.0.0.1 (never the network).

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when it is imported, so
the client runs in subprocesses with those set; the fake Hub runs here, in a thread.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fake_hub import FakeHub
from pixelcnn import ModelLoadError, load_model

pytestmark = pytest.mark.slow  # each scenario runs the client in a fresh Python process

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_FakeTokenForTests0123456789"
REPO = "user/tiny-pixelcnn"
OTHER = "user/pushed-only"

# Runs in the subprocess: train and push with train.py, then load from the Hub.
PUSH_AND_LOAD = r"""
import json, sys, torch, train, pixelcnn
result = {"rc": train.main(sys.argv[2:])}
x = torch.randint(0, 2, (2, 1, 28, 28), generator=torch.Generator().manual_seed(0)).float()
local = pixelcnn.load_model(sys.argv[sys.argv.index("--out") + 1] + "/pixelcnn")
hub = pixelcnn.load_model("%(repo)s")
result["same_outputs"] = torch.equal(local(x), hub(x))
from pixelcnn.hub import download, push
result["folder"] = str(download("%(repo)s"))
result["push_only_rc"] = train.main(sys.argv[2:-1] + ["%(other)s", "--push-only"])  # no training
result["repush"] = push("%(repo)s", sys.argv[sys.argv.index("--out") + 1] + "/pixelcnn")  # unchanged: no new commit
for name, kwargs in [("user/missing", {}), ("%(repo)s", {"revision": "no-such-branch"})]:
    try:
        pixelcnn.load_model(name, **kwargs)
    except pixelcnn.ModelLoadError as e:
        result.setdefault("errors", []).append(str(e))
json.dump(result, open(sys.argv[1], "w"))
""" % {"repo": REPO, "other": OTHER}

# Runs in the subprocess while the Hub answers every request with an error (FakeHub.fail).
LOAD_REFUSED = r"""
import json, sys, pixelcnn
try:
    pixelcnn.load_model("%(repo)s")
    result = {"loaded": True}
except pixelcnn.ModelLoadError as e:
    result = {"error": str(e)}
json.dump(result, open(sys.argv[1], "w"))
""" % {"repo": REPO}

# Runs in the subprocess once the Hub is gone: the cached copy, and a repo never downloaded.
LOAD_OFFLINE = r"""
import json, sys, torch, pixelcnn
x = torch.randint(0, 2, (2, 1, 28, 28), generator=torch.Generator().manual_seed(0)).float()
result = {"outputs": pixelcnn.load_model("%(repo)s")(x).tolist()}
try:
    pixelcnn.load_model("user/never-downloaded")
except pixelcnn.ModelLoadError as e:
    result["error"] = str(e)
json.dump(result, open(sys.argv[1], "w"))
""" % {"repo": REPO}


def _client_env(hub_url: str, hf_home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(hf_home), HF_TOKEN=TOKEN, HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_XET="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(ROOT), **extra)
    return env


def _run(script: str, env: dict, tmp: Path, *argv: str) -> tuple[dict, subprocess.CompletedProcess]:
    result_file = tmp / "result.json"
    result_file.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", script, str(result_file), *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert result_file.exists(), proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(result_file.read_text()), proc


@pytest.fixture(scope="module")
def session(tiny_mnist, tmp_path_factory):
    """Train, push and load with the fake Hub up; then stop it and load again. Everything is recorded."""
    tmp = tmp_path_factory.mktemp("hub")
    hf_home = tmp / "hf"
    out = tmp / "weights"
    args = ["--limit", "64", "--hidden-channels", "4", "--n-layers", "1", "--epochs", "1", "--samples", "1",
            "--data-dir", str(tiny_mnist), "--out", str(out), "--results", str(tmp / "results"),
            "--checkpoints", str(tmp / "checkpoints"), "--push-to-hub", REPO]
    hub = FakeHub().start()
    refused = {}
    try:
        online, push_proc = _run(PUSH_AND_LOAD, _client_env(hub.url, hf_home), tmp, *args)
        requests = len(hub.requests)
        for status in (401, 500):  # the Hub answers, with an error: the cached copy must not hide it
            hub.fail = status
            refused[status] = _run(LOAD_REFUSED, _client_env(hub.url, hf_home), tmp)
        hub.fail = None
        del hub.requests[requests:]
    finally:
        hub.stop()
    offline, offline_proc = _run(LOAD_OFFLINE, _client_env(hub.url, hf_home), tmp)  # connection refused now
    return {"hub": hub, "tmp": tmp, "out": out / "pixelcnn", "hf_home": hf_home, "online": online,
            "push_proc": push_proc, "offline": offline, "offline_proc": offline_proc, "refused": refused}


def test_train_py_pushes_the_saved_files_byte_for_byte(session):
    assert session["online"]["rc"] == 0, session["push_proc"].stderr[-3000:]
    files = session["hub"].files(REPO)
    out = session["out"]
    for name in ("config.json", "model.safetensors", "metrics.json", "README.md"):
        assert files[name] == (out / name).read_bytes(), name
    results = session["tmp"] / "results"
    assert files["results/pixelcnn_loss_curve.png"] == (results / "pixelcnn_loss_curve.png").read_bytes()
    assert files["results/pixelcnn_samples.png"] == (results / "pixelcnn_samples.png").read_bytes()
    assert "pushed to " in session["push_proc"].stdout


def test_weights_and_pictures_go_the_lfs_way_as_on_the_hub(session):
    """The Hub takes *.safetensors (its .gitattributes) and binary files (the PNGs) through LFS."""
    hub, requests = session["hub"], session["hub"].requests
    assert hub.lfs_paths(REPO) == {"model.safetensors", "results/pixelcnn_loss_curve.png",
                                   "results/pixelcnn_samples.png"}
    assert not hub.lfs_paths(REPO) & {"config.json", "metrics.json", "README.md"}  # text: inline in the commit
    assert any(m == "POST" and p.endswith(".git/info/lfs/objects/batch") for m, _, p, _ in requests)
    assert any(m == "POST" and p.endswith(".git/info/lfs/objects/verify") for m, _, p, _ in requests)
    stored = [(m, host, h) for m, host, p, h in requests if p.startswith("/lfs-storage/")]
    assert {m for m, _, _ in stored} == {"PUT", "GET"}  # uploaded, then downloaded through the redirect
    assert all(host == "localhost" and not {"authorization", "Authorization"} & set(h) for _, host, h in stored)
    # Each object went up once: the push of the same files to OTHER found them stored already.
    assert len([m for m, _, _ in stored if m == "PUT"]) == 3


def test_push_only_uploads_the_saved_model_without_training(session):
    assert session["online"]["push_only_rc"] == 0
    assert session["hub"].files(OTHER) == session["hub"].files(REPO)
    assert session["push_proc"].stdout.count("pushed to ") == 2
    assert len([line for line in session["push_proc"].stdout.splitlines() if "train / " in line]) == 1  # one run


def test_the_token_is_sent_but_never_printed(session):
    auth = [h.get("Authorization") or h.get("authorization") for m, _, p, h in session["hub"].requests if m == "POST"]
    assert auth and all(a == f"Bearer {TOKEN}" for a in auth)
    proc = session["push_proc"]
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
    assert TOKEN[3:] not in proc.stdout + proc.stderr
    assert TOKEN not in "".join(p.read_text(errors="ignore") for p in session["out"].iterdir())


def test_load_model_from_the_hub_gives_the_same_outputs(session):
    online = session["online"]
    assert online["same_outputs"] is True
    folder = Path(online["folder"])
    assert folder.is_relative_to(session["hf_home"])
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # only what it needs
    assert "/commit/" in online["repush"]
    downloads = [p for m, _, p, h in session["hub"].requests if m in ("GET", "HEAD") and "/resolve/" in p]
    assert not any(p.endswith((".png", "README.md", "metrics.json")) for p in downloads)


def test_unknown_repo_or_revision_is_a_one_line_error(session):
    errors = session["online"]["errors"]
    assert len(errors) == 2
    assert errors[0].startswith("user/missing: not found on the Hub")
    assert errors[1].startswith(f"{REPO}: not found on the Hub")
    assert all("\n" not in e for e in errors)


@pytest.mark.parametrize("status, says", [(401, "refused the token (401"), (500, "had a server error (500")])
def test_an_answer_with_an_error_is_its_own_one_line_error_not_the_cache(session, status, says):
    """A refused token or a server error is not "the Hub cannot be reached": no silent fallback."""
    result, proc = session["refused"][status]
    assert "loaded" not in result, proc.stderr[-3000:]
    err = result["error"]
    assert err.startswith(f"{REPO}: the Hub {says}") and "\n" not in err
    assert "cannot be reached" not in err and "cannot be reached" not in proc.stderr
    assert err.endswith("HF_HUB_OFFLINE=1 loads the cached copy")  # there is one, and it says how to use it
    if status == 401:
        assert "HF_TOKEN" in err and TOKEN not in err


def _raise(error):
    def raises(*args, **kwargs):
        raise error
    return raises


def test_a_timeout_is_unreachable_and_loads_the_cached_copy(session, monkeypatch, capsys):
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import httpx

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(session["hf_home"] / "hub"))
    monkeypatch.setattr(HfApi, "repo_info", _raise(httpx.ReadTimeout("timed out")))
    assert torch.equal(load_model(REPO).head.weight, load_model(session["out"]).head.weight)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be reached (ReadTimeout)" in err[0] and "cached copy" in err[0]


def test_a_bug_in_our_own_code_keeps_its_traceback(session, monkeypatch):
    """Not "the Hub cannot be reached", and not the cached copy: the error itself."""
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(session["hf_home"] / "hub"))
    monkeypatch.setattr(HfApi, "repo_info", _raise(TypeError("repo_info() got an unexpected keyword argument")))
    with pytest.raises(TypeError, match="unexpected keyword"):
        load_model(REPO)


def test_hub_down_loads_the_cached_copy_with_a_one_line_notice(session):
    proc = session["offline_proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    notices = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(notices) == 1, proc.stderr  # the notice, and not one more line
    assert "cannot be reached" in notices[0] and f"cached copy of {REPO}" in notices[0]
    local = load_model(session["out"])
    x = torch.randint(0, 2, (2, 1, 28, 28), generator=torch.Generator().manual_seed(0)).float()
    assert torch.equal(torch.tensor(session["offline"]["outputs"]), local(x))


def test_hub_down_without_a_cache_is_a_one_line_error(session):
    err = session["offline"]["error"]
    assert "\n" not in err
    assert err.startswith("user/never-downloaded: the Hub cannot be reached") and "no cached copy" in err


def test_hf_hub_offline_uses_the_cache_in_process(session, monkeypatch, capsys):
    """This process imported huggingface_hub with HF_HUB_OFFLINE=1 (conftest): point it at the filled cache."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(session["hf_home"] / "hub"))
    model = load_model(REPO)
    assert torch.equal(model.head.weight, load_model(session["out"]).head.weight)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HF_HUB_OFFLINE" in err[0] and "cached copy" in err[0]
    with pytest.raises(ModelLoadError) as e:
        load_model("user/never-downloaded")
    assert "HF_HUB_OFFLINE" in str(e.value) and "\n" not in str(e.value)
