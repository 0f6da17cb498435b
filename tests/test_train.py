"""train.py end to end on tiny generated data: outputs, learning, exact resume, divergence, errors."""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import train
import pixelcnn
from pixelcnn import PixelCNN, PixelCNNConfig, load_model, marginal_nats, save_model
from pixelcnn.data import load_mnist
from pixelcnn.gated import GatedPixelCNN, GatedPixelCNNConfig
from pixelcnn.trainer import TrainState, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
EPOCHS, STEPS = 3, 8  # 256 digits in batches of 32


def args(tiny_mnist, tmp: Path, *extra: str) -> list[str]:
    return ["--limit", "256", "--hidden-channels", "4", "--n-layers", "1", "--epochs", str(EPOCHS),
            "--batch-size", "32", "--lr", "0.01", "--samples", "2", "--data-dir", str(tiny_mnist),
            "--out", str(tmp / "weights"), "--results", str(tmp / "results"),
            "--checkpoints", str(tmp / "checkpoints"), *extra]


@pytest.fixture(autouse=True)
def quick_plots(monkeypatch):
    """The loss curve takes matplotlib half a second per epoch; only the reference run draws it."""
    monkeypatch.setattr(train, "save_loss_curve", lambda history, path, **kw: None)


@pytest.fixture(scope="module", autouse=True)
def cpu_only():
    """Exact equality between runs is a CPU promise (cuDNN may pick other kernels): train on the CPU."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: False)
        yield


def _stderr_lines(capsys) -> list[str]:
    """What train.py wrote to stderr, less tqdm's progress bars."""
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and not re.match(r"epoch \d+/\d+:", line)]


class Killed(BaseException):
    """Stands in for a kill: nothing in train.py or the trainer catches it."""


@pytest.fixture
def kill_at(monkeypatch):
    """kill_at(n): the n-th training call of model.loss (1-based) raises Killed; evaluation calls don't count."""
    def arm(n: int, cls=PixelCNN):
        calls = {"n": 0}
        original = cls.loss

        def loss(self, batch):
            if self.training:
                calls["n"] += 1
                if calls["n"] == n:
                    raise Killed(f"killed at training step {n}")
            return original(self, batch)

        monkeypatch.setattr(cls, "loss", loss)
        return lambda: monkeypatch.setattr(cls, "loss", original)  # disarm
    return arm


@pytest.fixture(scope="module")
def reference(tiny_mnist, tmp_path_factory) -> Path:
    """One uninterrupted run; the others must end exactly where it ends."""
    tmp = tmp_path_factory.mktemp("reference")
    assert train.main(args(tiny_mnist, tmp)) == 0
    return tmp


def _weights(tmp: Path) -> dict[str, torch.Tensor]:
    return load_file(tmp / "weights" / "pixelcnn" / "model.safetensors")


def _metrics(tmp: Path) -> dict:
    return json.loads((tmp / "weights" / "pixelcnn" / "metrics.json").read_text())


def _assert_same_run(tmp: Path, reference: Path):
    a, b = _weights(tmp), _weights(reference)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = lambda m: [(h["epoch"], h["train_loss"], h["test_loss"]) for h in m["history"]]  # noqa: E731
    assert losses(_metrics(tmp)) == losses(_metrics(reference))  # exactly, not approximately


# ---- the outputs ----

def test_writes_weights_metrics_card_and_plots(reference, capsys):
    out = reference / "weights" / "pixelcnn"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "metrics.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["hidden_channels"] == 4

    m = _metrics(reference)
    assert m["epochs"] == EPOCHS and [h["epoch"] for h in m["history"]] == [1, 2, 3]
    for h in m["history"]:
        assert math.isfinite(h["train_loss"]) and math.isfinite(h["test_loss"])
    assert m["test_loss"] == m["history"][-1]["test_loss"]
    assert m["wall_time_s"] >= 0 and m["device"] == "cpu" and m["runs"][0]["device"] == "cpu"
    assert m["data"]["train_images"] == 256 and m["data"]["test_images"] == 64
    assert m["train_config"]["lr"] == 0.01 and m["model_config"]["n_layers"] == 1
    assert m["parameters"] == sum(p.numel() for p in load_model(out).parameters())

    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and f"{m['test_loss']:.4f}" in card and "in progress" not in card

    curve = Image.open(reference / "results" / "pixelcnn_loss_curve.png")
    samples = Image.open(reference / "results" / "pixelcnn_samples.png")
    assert curve.size[0] > 100 and samples.size[0] > 28 * 2  # two digits side by side, upscaled


def test_loss_goes_down_on_learnable_data(reference):
    h = _metrics(reference)["history"]
    assert h[-1]["train_loss"] < 0.8 * h[0]["train_loss"]
    assert h[-1]["test_loss"] < h[0]["test_loss"] < math.log(2) + 0.1


def test_saved_weights_are_the_checkpointed_model(reference):
    ckpt = load_file(reference / "checkpoints" / "pixelcnn.safetensors")
    for k, v in _weights(reference).items():
        assert torch.equal(ckpt[f"model.{k}"], v)


def test_prints_one_row_per_epoch(tiny_mnist, tmp_path, capsys):
    assert train.main(args(tiny_mnist, tmp_path, "--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert "256 train / 64 test digits" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("1 ")]
    assert len(rows) == 1 and len(rows[0]) == 4
    assert "wrote" in out


# ---- resuming gives exactly the uninterrupted run ----

@pytest.mark.parametrize("every, kill, resume_every", [
    ("0", 12, "0"),      # a checkpoint after every step; killed mid epoch 2
    ("1e9", 13, "1e9"),  # a checkpoint only after each epoch; epoch 2 is redone from its start
    ("0", 3, "1e9"),     # killed mid epoch 1; the interval may change on --resume
    ("0", 17, "0"),      # killed on the first step of the last epoch
])
def test_resume_after_a_kill_matches_the_uninterrupted_run(tiny_mnist, tmp_path, reference, kill_at,
                                                           every, kill, resume_every):
    disarm = kill_at(kill)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", every))
    disarm()
    state = load_file(tmp_path / "checkpoints" / "pixelcnn.safetensors")  # a loadable checkpoint was left
    assert state
    assert train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", resume_every, "--resume")) == 0
    _assert_same_run(tmp_path, reference)
    runs = _metrics(tmp_path)["runs"]
    assert len(runs) == 2 and runs[1]["from_epoch"] == (kill - 1) // STEPS
    if every == "0":
        assert runs[1]["from_step"] == (kill - 1) % STEPS  # resumed mid-epoch, at the step after the last done


def test_resume_twice_and_resume_a_finished_run(tiny_mnist, tmp_path, reference, kill_at):
    disarm = kill_at(5)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "0"))
    disarm()
    disarm = kill_at(6)  # 5 steps into the resumed run
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "0", "--resume"))
    disarm()
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 0
    _assert_same_run(tmp_path, reference)
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 0  # nothing left to do: still fine
    _assert_same_run(tmp_path, reference)


def test_killed_between_the_last_checkpoint_and_the_weights(tiny_mnist, tmp_path, reference, monkeypatch):
    """The last epoch is checkpointed, then the run dies before writing weights/: --resume writes them."""
    real_save = train.save_model

    def die_on_last_epoch(model, folder):
        if len(list((tmp_path / "weights").rglob("metrics.json"))) and _metrics(tmp_path)["epochs"] == EPOCHS - 1:
            raise Killed
        return real_save(model, folder)

    monkeypatch.setattr(train, "save_model", die_on_last_epoch)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path))
    monkeypatch.setattr(train, "save_model", real_save)
    assert _metrics(tmp_path)["epochs"] == EPOCHS - 1  # weights/ is one epoch behind the checkpoint
    assert "Training in progress: 2 of 3 epochs done" in (tmp_path / "weights" / "pixelcnn" / "README.md").read_text()
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 0
    _assert_same_run(tmp_path, reference)


@pytest.mark.slow  # a fresh Python process
def test_resume_after_sigkill_of_the_process(tiny_mnist, tmp_path, reference):
    """A real SIGKILL in the middle of epoch 2, maybe mid-write: the checkpoint survives and resumes exactly."""
    slow = (  # the same run, each step slowed down so that the kill lands mid-run
        "import sys, time; import pixelcnn.model as m; f = m.PixelCNN.loss\n"
        "m.PixelCNN.loss = lambda self, b: (time.sleep(0.2 if self.training else 0), f(self, b))[1]\n"
        "import train; sys.exit(train.main(sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.Popen([sys.executable, "-c", slow, *args(tiny_mnist, tmp_path, "--checkpoint-every", "0")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "weights" / "pixelcnn" / "metrics.json"
    deadline = time.monotonic() + 120
    while not metrics.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # a step or two into epoch 2 (8 steps of 0.2 s)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert _metrics(tmp_path)["epochs"] == 1
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 0
    _assert_same_run(tmp_path, reference)


@pytest.fixture
def signal_at(monkeypatch):
    """signal_at(n, signum): the n-th call of model.loss in training (or, with evaluating, in evaluation) sends
    this process signum, once, or twice with twice=True: as a user's Ctrl-C or a SIGTERM would, mid-step."""
    def arm(n: int, signum: int, evaluating: bool = False, twice: bool = False):
        calls = {"n": 0}
        original = PixelCNN.loss

        def loss(self, batch):
            if self.training != evaluating:
                calls["n"] += 1
                if calls["n"] == n:
                    for _ in range(2 if twice else 1):  # raised in this thread, so each is handled before the next:
                        signal.raise_signal(signum)  # os.kill may reach a torch thread, and two pending merge
            return original(self, batch)

        monkeypatch.setattr(PixelCNN, "loss", loss)
    return arm


@pytest.mark.parametrize("signum, n", [(signal.SIGINT, 11), (signal.SIGTERM, 3)])
def test_a_signal_stops_after_the_step_with_a_checkpoint_of_every_step(tiny_mnist, tmp_path, reference, capsys,
                                                                     signal_at, signum, n):
    """With no periodic checkpoint, a kill would lose the epoch's steps: a signal loses none."""
    before = signal.getsignal(signum)
    signal_at(n, signum)
    assert train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "1e9")) == 128 + signum
    err = _stderr_lines(capsys)
    assert f"stopped by {signal.Signals(signum).name} after {n // STEPS} epochs and {n % STEPS} steps" in err[-1]
    assert "--resume" in err[-1]
    assert signal.getsignal(signum) is before  # the handler is the one before training again
    assert train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "1e9", "--resume")) == 0  # no more signals
    _assert_same_run(tmp_path, reference)
    runs = _metrics(tmp_path)["runs"]
    assert (runs[1]["from_epoch"], runs[1]["from_step"]) == (n // STEPS, n % STEPS)


def test_a_signal_during_the_evaluation_stops_after_the_epoch(tiny_mnist, tmp_path, reference, capsys, signal_at):
    signal_at(1, signal.SIGTERM, evaluating=True)  # epoch 1's evaluation
    assert train.main(args(tiny_mnist, tmp_path)) == 128 + signal.SIGTERM
    assert "after 1 epochs and 0 steps" in _stderr_lines(capsys)[-1]
    assert _metrics(tmp_path)["epochs"] == 1  # epoch 1's weights were written before it stopped
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 0
    _assert_same_run(tmp_path, reference)


def test_a_second_signal_stops_at_once(tiny_mnist, tmp_path, signal_at):
    """The second signal goes to the handler from before training: Python's own raises KeyboardInterrupt.
    (conftest.py gives the session's handlers back after every test.)"""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal_at(3, signal.SIGINT, twice=True)
    with pytest.raises(KeyboardInterrupt):
        train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "1e9"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow  # a fresh Python process
def test_sigterm_from_outside_stops_the_process_with_every_step_kept(tiny_mnist, tmp_path, reference):
    steps_file = tmp_path / "steps"
    slow = (  # each training step slowed down, and counted in a file, so that the signal lands mid-epoch 2
        "import os, sys, time; import pixelcnn.model as m; f = m.PixelCNN.loss; n = [0]\n"
        "def loss(self, b):\n"
        "    if self.training:\n"
        "        n[0] += 1; open(os.environ['STEPS_FILE'], 'w').write(str(n[0])); time.sleep(0.2)\n"
        "    return f(self, b)\n"
        "m.PixelCNN.loss = loss\n"
        "import train; sys.exit(train.main(sys.argv[1:]))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               STEPS_FILE=str(steps_file))
    proc = subprocess.Popen([sys.executable, "-c", slow, *args(tiny_mnist, tmp_path, "--checkpoint-every", "1e9")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        said = steps_file.read_text() if steps_file.exists() else ""  # read once: the writer truncates, then writes
        if said.isdigit() and int(said) >= STEPS + 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # during epoch 2's second step (or later)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM after 1 epochs and" in err
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 0
    _assert_same_run(tmp_path, reference)
    runs = _metrics(tmp_path)["runs"]
    assert runs[1]["from_epoch"] == 1 and runs[1]["from_step"] >= 2  # epoch 2's steps were kept, not redone


# ---- divergence ----

class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss that would spoil the weights."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * math.inf


@pytest.mark.parametrize("make_bad", [
    lambda loss: loss * math.nan,
    lambda loss: loss + math.inf,
    lambda loss: _InfGrad.apply(loss),
], ids=["nan-loss", "inf-loss", "inf-gradient"])
def test_divergence_stops_and_keeps_the_last_good_checkpoint(tiny_mnist, tmp_path, monkeypatch, capsys, make_bad):
    original = PixelCNN.loss
    calls = {"n": 0}

    def loss(self, batch):
        value = original(self, batch)
        if self.training:
            calls["n"] += 1
            if calls["n"] == STEPS + 3:  # in epoch 2
                return make_bad(value)
        return value

    monkeypatch.setattr(PixelCNN, "loss", loss)
    ckpt = tmp_path / "checkpoints" / "pixelcnn.safetensors"
    assert train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "0")) == 1
    err = _one_line_error(capsys)
    assert "stopped" in err and str(ckpt) in err
    assert "1 epochs and 2 steps done" in err
    good = load_file(ckpt)
    assert all(torch.isfinite(v).all() for v in good.values())
    assert _metrics(tmp_path)["epochs"] == 1  # the weights of epoch 1 stay
    monkeypatch.setattr(PixelCNN, "loss", original)
    assert train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "0", "--resume")) == 0


def test_divergence_before_any_checkpoint_says_so(tiny_mnist, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(PixelCNN, "loss", lambda self, batch: torch.tensor(math.nan, requires_grad=True))
    assert train.main(args(tiny_mnist, tmp_path)) == 1
    assert "No checkpoint was saved" in _one_line_error(capsys)


# ---- one-line errors ----

@pytest.mark.parametrize("bad", [
    ["--epochs", "0"], ["--batch-size", "0"], ["--kernel-size", "4"], ["--lr", "0"], ["--lr", "x"],
    ["--n-layers", "-1"], ["--limit", "-5"], ["--push-to-hub", "not a repo"], ["--no-such-flag"],
])
def test_bad_arguments(tiny_mnist, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as e:
        train.main(args(tiny_mnist, tmp_path, *bad))
    assert e.value.code == 2
    assert _one_line_error(capsys).endswith("(see --help)")
    assert not (tmp_path / "checkpoints").exists()


def _one_line_error(capsys) -> str:
    err = _stderr_lines(capsys)
    assert len(err) == 1 and err[0].startswith("train.py: error:"), err
    return err[0]


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_checkpoint(tiny_mnist, tmp_path, capsys, content):
    ckpt = tmp_path / "checkpoints" / "pixelcnn.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(content)
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 1
    assert "corrupt checkpoint" in _one_line_error(capsys)
    assert ckpt.read_bytes() == content  # left as it was, for a look


def test_checkpoint_with_bad_metadata(tiny_mnist, tmp_path, capsys):
    from safetensors.torch import save_file

    ckpt = tmp_path / "checkpoints" / "pixelcnn.safetensors"
    ckpt.parent.mkdir()
    save_file({"x": torch.zeros(1)}, ckpt, metadata={"state": "{not json"})
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 1
    assert "corrupt checkpoint" in _one_line_error(capsys)


def test_an_unexpected_error_in_training_keeps_its_traceback(tiny_mnist, tmp_path, monkeypatch, capsys):
    """Only the trainer's own errors (TrainingError) are one line: a ValueError from a bug is not."""
    def bug(self, batch):
        raise ValueError("a bug: operands could not be broadcast together")

    monkeypatch.setattr(PixelCNN, "loss", bug)
    with pytest.raises(ValueError, match="a bug"):
        train.main(args(tiny_mnist, tmp_path, "--epochs", "1"))
    assert "train.py: error" not in capsys.readouterr().err


@pytest.mark.parametrize("make_bad", [
    lambda ckpt: ckpt.write_bytes(b"garbage"),
    lambda ckpt: ckpt.unlink(),
], ids=["corrupt", "missing"])
def test_the_trainers_expected_failures_are_training_errors(tmp_path, make_bad):
    from pixelcnn.trainer import TrainConfig, TrainingError, fit

    model = PixelCNN(PixelCNNConfig(hidden_channels=2, n_layers=0))
    ckpt = tmp_path / "c.safetensors"
    save_checkpoint(ckpt, model, torch.optim.Adam(model.parameters()), TrainState(), {})
    make_bad(ckpt)
    data = (torch.zeros(4, 1, 4, 4),)
    with pytest.raises(TrainingError):
        fit(model, data, data, TrainConfig(epochs=1, batch_size=2), ckpt, resume=True)
    with pytest.raises(TrainingError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")


def test_resume_without_a_checkpoint(tiny_mnist, tmp_path, capsys):
    assert train.main(args(tiny_mnist, tmp_path, "--resume")) == 1
    assert "no checkpoint" in _one_line_error(capsys)


def test_resume_with_other_settings(tiny_mnist, tmp_path, capsys, kill_at):
    disarm = kill_at(3)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "0"))
    disarm()
    capsys.readouterr()
    assert train.main(args(tiny_mnist, tmp_path, "--resume", "--lr", "0.02")) == 1
    assert "train_config.lr 0.01 -> 0.02" in _one_line_error(capsys)
    assert train.main(args(tiny_mnist, tmp_path, "--resume", "--hidden-channels", "8")) == 1
    assert "model_config.hidden_channels 4 -> 8" in _one_line_error(capsys)
    # more (or fewer) epochs is not another setting: it continues, and the runs record the change
    assert train.main(args(tiny_mnist, tmp_path, "--resume", "--epochs", "1")) == 0
    assert [r["epochs"] for r in _metrics(tmp_path)["runs"]] == [EPOCHS, 1]
    card = (tmp_path / "weights" / "pixelcnn" / "README.md").read_text()
    assert "`--epochs` changed on resume (to 1 at epoch 0);" in card


def test_the_evaluation_batch_size_is_not_a_setting_of_the_run():
    """Checkpoints made when it was 1000 resume now that it is 100: it changes no step."""
    from dataclasses import asdict

    from pixelcnn.trainer import TrainConfig, _settings

    meta = lambda **kw: {"model_config": {"hidden_channels": 4}, "train_config": asdict(TrainConfig(**kw))}  # noqa: E731
    assert _settings(meta(eval_batch_size=1000)) == _settings(meta())
    assert _settings(meta(lr=0.02)) != _settings(meta())


def test_missing_data_is_a_one_line_error(tmp_path, capsys, no_download):
    empty = tmp_path / "nodata"
    assert train.main(args(empty, tmp_path)) == 1
    msg = _one_line_error(capsys)
    assert str((empty / "MNIST" / "raw").resolve()) in msg


# ---- the checkpoint is written atomically ----

def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import pixelcnn.trainer as trainer

    model = PixelCNN(PixelCNNConfig(hidden_channels=2, n_layers=0))
    opt = torch.optim.Adam(model.parameters())
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, opt, TrainState(epoch=1), {})
    before = path.read_bytes()

    def crash(tensors, tmp, metadata=None):
        Path(tmp).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(trainer, "save_file", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, model, opt, TrainState(epoch=2), {})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_a_failed_push_is_a_one_line_error_and_keeps_the_weights(tiny_mnist, tmp_path, monkeypatch, capsys):
    import pixelcnn.hub

    def refuse(*a, **k):
        raise RuntimeError("401 Client Error.\n\nInvalid credentials in Authorization header")

    monkeypatch.setattr(pixelcnn.hub, "push", refuse)
    assert train.main(args(tiny_mnist, tmp_path, "--epochs", "1", "--push-to-hub", "user/repo")) == 1
    err = _one_line_error(capsys)
    assert "could not push to user/repo" in err and "Invalid credentials" in err
    assert (tmp_path / "weights" / "pixelcnn" / "model.safetensors").is_file()


# ---- other models and settings ----

def test_trains_the_gated_model_and_resumes_it_exactly(tiny_mnist, tmp_path, kill_at, capsys):
    gated = ["--model", "gated_pixelcnn", "--name", "gated", "--n-layers", "2", "--lr-schedule", "cosine",
             "--checkpoint-every", "0", "--dropout", "0.1"]  # dropout draws random numbers: resumed all the same
    ref = tmp_path / "ref"
    assert train.main(args(tiny_mnist, ref, *gated)) == 0
    m = json.loads((ref / "weights" / "gated" / "metrics.json").read_text())
    assert m["model_config"]["model_type"] == "gated_pixelcnn" and m["model_config"]["n_labels"] == 10
    assert m["model_config"]["dropout"] == 0.1 and m["train_config"]["lr_schedule"] == "cosine"
    assert m["history"][-1]["test_loss"] < m["history"][0]["test_loss"]
    card = (ref / "weights" / "gated" / "README.md").read_text()
    assert "--model gated_pixelcnn" in card and "--lr-schedule cosine" in card and "gated PixelCNN" in card
    assert "--dropout 0.1" in card
    assert (ref / "results" / "gated_samples.png").is_file()

    # --evaluate: the loss with the label dropped, and with p(x) marginalised over the labels
    capsys.readouterr()
    assert train.main(args(tiny_mnist, ref, *gated, "--evaluate")) == 0
    out = capsys.readouterr().out
    ev = json.loads((ref / "weights" / "gated" / "metrics.json").read_text())["evaluation"]
    assert ev["test_loss"] == pytest.approx(m["test_loss"], rel=1e-5)
    images, _ = load_mnist(tiny_mnist, train=False)
    model = load_model(ref / "weights" / "gated")
    expected = float(marginal_nats(model, images[:256]).double().mean()) / 784
    assert ev["test_loss_marginal"] == pytest.approx(expected, rel=1e-6)
    assert f"test loss {expected:.4f} nats per pixel" in out and "marginalised over the 10 labels" in out
    assert f"**{expected:.4f}**" in (ref / "weights" / "gated" / "README.md").read_text()
    images, labels = load_mnist(tiny_mnist, train=False)
    given = float(pixelcnn.surprise(model, images[:256], label=labels[:256]).nats.double().mean()) / 784
    assert ev["test_loss_given"] == pytest.approx(given, rel=1e-5) and f"{given:.4f} given" in out
    nats = pixelcnn.label_nats(model, images[:256])  # Bayes classification, recorded for bench_quality
    assert ev["bayes_accuracy"] == pytest.approx(float((nats.argmin(1) == labels[:256]).double().mean()))
    weights = (ref / "weights" / "gated" / "model.safetensors").read_bytes()
    assert ev["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert f"it reads {ev['bayes_accuracy']:.2%} of the test digits as their true label" in (
        ref / "weights" / "gated" / "README.md").read_text()

    # Killed mid-run and resumed: label dropout and the learning rate depend on the step alone,
    # so the resumed run ends on exactly the same weights.
    disarm = kill_at(12, GatedPixelCNN)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path, *gated))
    disarm()
    assert train.main(args(tiny_mnist, tmp_path, *gated, "--resume")) == 0
    a = load_file(tmp_path / "weights" / "gated" / "model.safetensors")
    b = load_file(ref / "weights" / "gated" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cosine_schedule_goes_from_lr_to_zero():
    from pixelcnn.trainer import TrainConfig

    tc = TrainConfig(lr=0.01, lr_schedule="cosine")
    assert tc.lr_at(0, 100) == 0.01 and tc.lr_at(50, 100) == pytest.approx(0.005) and tc.lr_at(100, 100) == 0
    assert TrainConfig(lr=0.01).lr_at(99, 100) == 0.01
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")


def test_evaluate_remeasures_the_saved_test_loss_and_records_it(tiny_mnist, reference, tmp_path, capsys):
    shutil.copytree(reference / "weights", tmp_path / "weights")  # the reference stays as it is
    capsys.readouterr()
    assert train.main(args(tiny_mnist, tmp_path, "--evaluate")) == 0
    out = capsys.readouterr().out
    m = _metrics(tmp_path)
    assert f"test loss {m['test_loss']:.4f} nats per pixel" in out and "marginalised" not in out
    assert m["evaluation"]["test_loss"] == pytest.approx(m["test_loss"], rel=1e-5)  # batches of 100, not 1000
    assert "test_loss_marginal" not in m["evaluation"]
    card = (tmp_path / "weights" / "pixelcnn" / "README.md").read_text()
    assert f"Remeasured with `python train.py --name pixelcnn --evaluate`: {m['test_loss']:.4f}" in card
    # on a part of the test set it only prints
    capsys.readouterr()
    assert train.main(args(tiny_mnist, tmp_path, "--evaluate", "--limit", "50")) == 0
    assert "on 50 digits" in capsys.readouterr().out and _metrics(tmp_path)["evaluation"] == m["evaluation"]


def test_evaluate_leaves_the_model_in_the_mode_it_found():
    from pixelcnn.trainer import evaluate

    model = PixelCNN(PixelCNNConfig(hidden_channels=2, n_layers=0))
    data = (torch.zeros(4, 1, 4, 4),)
    for training in (False, True):
        model.train(training)
        evaluate(model, data, 2, "cpu")
        assert model.training is training


def test_evaluate_measures_the_marginal_in_eval_mode(tiny_mnist, tmp_path, monkeypatch):
    """train.py --evaluate: the loss, then p(x) marginalised over the labels, both with the model in eval mode."""
    torch.manual_seed(0)
    save_model(GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=4, n_layers=1)), tmp_path / "weights" / "gated")
    modes = []
    forward = GatedPixelCNN.forward
    monkeypatch.setattr(GatedPixelCNN, "forward", lambda self, *a, **k: (modes.append(self.training),
                                                                        forward(self, *a, **k))[1])
    assert train.main(args(tiny_mnist, tmp_path, "--model", "gated_pixelcnn", "--name", "gated", "--limit", "20",
                           "--evaluate")) == 0
    assert modes and not any(modes), f"{sum(modes)} of {len(modes)} forward passes in train mode"


def test_evaluate_without_weights_is_a_one_line_error(tiny_mnist, tmp_path, capsys):
    assert train.main(args(tiny_mnist, tmp_path, "--evaluate")) == 1
    assert "pixelcnn" in _one_line_error(capsys)


def test_push_only_without_saved_weights_is_a_one_line_error(tiny_mnist, tmp_path, capsys):
    assert train.main(args(tiny_mnist, tmp_path, "--push-only", "--push-to-hub", "user/repo")) == 1
    assert "nothing to push" in _one_line_error(capsys)


def test_push_only_needs_a_repo(tiny_mnist, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(args(tiny_mnist, tmp_path, "--push-only"))
    assert "--push-only needs --push-to-hub" in capsys.readouterr().err


def test_a_new_run_never_overwrites_an_earlier_runs_checkpoint(tiny_mnist, tmp_path, capsys, kill_at):
    disarm = kill_at(12)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path, "--checkpoint-every", "0"))
    disarm()
    ckpt = tmp_path / "checkpoints" / "pixelcnn.safetensors"
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert train.main(args(tiny_mnist, tmp_path)) == 1
    err = _one_line_error(capsys)
    assert "holds an earlier run" in err and "--resume" in err and "--restart" in err
    assert ckpt.read_bytes() == before
    assert train.main(args(tiny_mnist, tmp_path, "--restart", "--epochs", "1")) == 0
    assert ckpt.read_bytes() != before


def test_resume_and_restart_exclude_each_other(tiny_mnist, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(args(tiny_mnist, tmp_path, "--resume", "--restart"))
    assert "exclude each other" in capsys.readouterr().err


def test_the_weight_average_warms_up_and_forgets_the_first_steps():
    from torch.optim.swa_utils import AveragedModel

    from pixelcnn.trainer import ema_update

    model = torch.nn.Linear(1, 1, bias=False)
    ema = AveragedModel(model, multi_avg_fn=ema_update(0.999))
    expected = None
    for step in range(2000):
        with torch.no_grad():
            model.weight.fill_(float(step))
        ema.update_parameters(model)
        if expected is None:
            expected = float(step)  # the first update copies the model
        else:
            n = step  # updates before this one
            d = min(0.999, (1 + n) / (10 + n))
            expected = d * expected + (1 - d) * step
        assert ema.module.weight.item() == pytest.approx(expected, rel=1e-5)
    # What is left of the first 100 steps' weights after 2,000: all but nothing; a plain EMA of 0.999
    # (torch's get_ema_multi_avg_fn) still holds 15% of them, and scores like the early model.
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    for fn, low, high in ((ema_update(0.999), 0, 1e-3), (get_ema_multi_avg_fn(0.999), 0.1, 1)):
        ema = AveragedModel(model, multi_avg_fn=fn)
        for step in range(2000):
            with torch.no_grad():
                model.weight.fill_(1.0 if step < 100 else 0.0)
            ema.update_parameters(model)
        assert low <= ema.module.weight.item() < high


def test_with_ema_the_average_is_saved_and_a_killed_run_resumes_to_it_exactly(tiny_mnist, tmp_path, kill_at):
    ema = ["--ema", "0.99", "--checkpoint-every", "0"]
    ref = tmp_path / "ref"
    assert train.main(args(tiny_mnist, ref, *ema)) == 0
    m = json.loads((ref / "weights" / "pixelcnn" / "metrics.json").read_text())
    assert m["train_config"]["ema"] == 0.99 and "--ema 0.99" in (ref / "weights" / "pixelcnn" / "README.md").read_text()
    saved = load_file(ref / "weights" / "pixelcnn" / "model.safetensors")
    with safe_open(str(ref / "checkpoints" / "pixelcnn.safetensors"), "pt") as f:
        raw = {k[len("model."):]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
        average = {k[len("ema.module."):]: f.get_tensor(k) for k in f.keys() if k.startswith("ema.module.")}
    assert all(torch.equal(saved[k], average[k]) for k in saved)  # the weights saved are the average's ...
    assert any(not torch.equal(saved[k], raw[k]) for k in saved)  # ... not the last step's

    disarm = kill_at(5)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path, *ema))
    disarm()
    assert train.main(args(tiny_mnist, tmp_path, *ema, "--resume")) == 0
    resumed = load_file(tmp_path / "weights" / "pixelcnn" / "model.safetensors")
    assert all(torch.equal(resumed[k], saved[k]) for k in saved)


def test_init_from_starts_a_four_orientation_model_as_the_saved_one(tiny_mnist, tmp_path, capsys, kill_at):
    gated = ["--model", "gated_pixelcnn", "--n-layers", "2", "--checkpoint-every", "0"]
    base = tmp_path / "base"
    assert train.main(args(tiny_mnist, base, *gated, "--name", "one")) == 0
    source = base / "weights" / "one"

    # Weights that do not fit are a one-line error, before any training
    capsys.readouterr()
    assert train.main(args(tiny_mnist, tmp_path, *gated, "--name", "bad", "--hidden-channels", "2",
                           "--init-from", str(source))) == 1
    assert "do not fit this model" in _one_line_error(capsys)
    assert not (tmp_path / "checkpoints" / "bad.safetensors").exists()

    # Started from the one-orientation model, before its first step the four-orientation model
    # is that model in its own orientation (its orientation embedding starts at zero)
    seen = {}
    real_fit = train.fit

    def fit(model, *a, **kw):
        seen["start"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_fit(model, *a, **kw)

    four = [*gated, "--name", "four", "--n-orientations", "4", "--init-from", str(source)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "fit", fit)
        assert train.main(args(tiny_mnist, tmp_path, *four)) == 0
    saved = load_file(source / "model.safetensors")
    start = seen["start"]
    assert all(torch.equal(start[k], v) for k, v in saved.items())
    extra = sorted(set(start) - set(saved))
    assert extra and all("orientation" in k and not start[k].any() for k in extra)
    m = _metrics_of(tmp_path, "four")
    assert m["init_from"]["folder"] == str(source) and m["init_from"]["kept_their_start"] == extra
    assert m["init_from"]["epochs"] == EPOCHS
    card = (tmp_path / "weights" / "four" / "README.md").read_text()
    assert f"--init-from {source}" in card and m["init_from"]["sha256"][:12] in card
    assert "trains this model from the weights it started from" in card and "from scratch" not in card

    # --evaluate reports each orientation's likelihood and that of their mean, p(x) = 1/4 sum_o p_o(x)
    capsys.readouterr()
    assert train.main(args(tiny_mnist, tmp_path, *four[:-2], "--evaluate")) == 0
    out = capsys.readouterr().out
    ev = _metrics_of(tmp_path, "four")["evaluation"]
    images, _ = load_mnist(tiny_mnist, train=False)
    model = load_model(tmp_path / "weights" / "four")
    per = torch.stack([marginal_nats(model, images[:256], orientation=o) for o in range(4)], 1).double()
    assert ev["test_loss_each_orientation"]["top"] == pytest.approx(ev["test_loss_marginal"], rel=1e-5)
    assert list(ev["test_loss_each_orientation"].values()) == pytest.approx((per.mean(0) / 784).tolist(), rel=1e-5)
    mixture = float((math.log(4) - torch.logsumexp(-per, 1)).mean()) / 784
    assert ev["test_loss_orders"] == pytest.approx(mixture, rel=1e-5)
    assert mixture < min(ev["test_loss_each_orientation"].values()) + math.log(4) / 784  # at most log 4 worse
    assert "the mean over its 4 orientations" in out and f"{mixture:.4f}" in out
    assert f"**{mixture:.4f}**" in (tmp_path / "weights" / "four" / "README.md").read_text()
    kept = tmp_path / "checkpoints" / "four-evaluation.safetensors"
    assert not kept.exists()  # the rows it kept while measuring go once the figures are recorded

    # An evaluation killed part way continues from the rows it kept, to the same figures
    calls = []

    class Stopped(Exception):
        pass

    def killed_later(model, images, *a, **k):
        calls.append(len(images))
        if len(calls) == 6:  # top and bottom first done, and 16 digits of left first: killed in the middle of it
            raise Stopped
        return marginal_nats(model, images, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train.Measured, "CHUNK", 16)
        mp.setattr(train, "marginal_nats", killed_later)
        with pytest.raises(Stopped):
            train.main(args(tiny_mnist, tmp_path, *four[:-2], "--evaluate"))
        assert kept.is_file()
        calls.clear()
        mp.setattr(train, "marginal_nats", lambda model, images, *a, **k: (
            calls.append(len(images)), marginal_nats(model, images, *a, **k))[1])
        capsys.readouterr()
        assert train.main(args(tiny_mnist, tmp_path, *four[:-2], "--evaluate")) == 0
    assert "continuing the evaluation kept in" in capsys.readouterr().out
    assert sum(calls) == 64 * 2 - 16  # left first from its second chunk, and right first: the rest was kept
    again = _metrics_of(tmp_path, "four")["evaluation"]
    for key in ("test_loss_marginal", "test_loss_orders"):
        assert again[key] == pytest.approx(ev[key], rel=1e-6)
    assert not kept.exists()

    # Killed and resumed, it ends where the uninterrupted run ended; resumed from other weights, it refuses
    _killed_resumes_only_as_started(tiny_mnist, tmp_path, capsys, kill_at, "four", four, four[:-2], "init_from")


def test_init_from_a_narrower_model_widens_it(tiny_mnist, tmp_path, capsys):
    """--hidden-channels 6 from a model of 4: before its first step the new model has the saved one's logits."""
    gated = ["--model", "gated_pixelcnn", "--n-layers", "2", "--checkpoint-every", "0", "--epochs", "1"]
    base = tmp_path / "base"
    assert train.main(args(tiny_mnist, base, *gated, "--name", "narrow")) == 0
    source = base / "weights" / "narrow"
    seen = {}
    real_fit = train.fit

    def fit(model, *a, **kw):
        seen["start"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_fit(model, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "fit", fit)
        assert train.main(args(tiny_mnist, tmp_path, *gated, "--name", "wide", "--hidden-channels", "6",
                               "--init-from", str(source))) == 0
    wide = GatedPixelCNN(load_model(tmp_path / "weights" / "wide").config).eval()
    wide.load_state_dict(seen["start"])
    narrow = load_model(source)
    x = load_mnist(tiny_mnist, train=False)[0][:8]
    assert torch.allclose(wide(x, 3), narrow(x, 3), atol=1e-5) and torch.allclose(wide(x), narrow(x), atol=1e-5)
    m = _metrics_of(tmp_path, "wide")
    assert m["init_from"]["widened_from"] == 4 and "kept_their_start" not in m["init_from"]
    assert "widened from 4 channels" in (tmp_path / "weights" / "wide" / "README.md").read_text()


def test_a_teacher_is_learnt_from_recorded_and_asked_for_again_on_resume(tiny_mnist, tmp_path, capsys, kill_at):
    gated = ["--model", "gated_pixelcnn", "--n-layers", "2", "--checkpoint-every", "0", "--epochs", "2"]
    base = tmp_path / "base"
    assert train.main(args(tiny_mnist, base, *gated, "--name", "teacher")) == 0
    teacher = base / "weights" / "teacher"

    # A teacher that is not there is a one-line error, before any training
    capsys.readouterr()
    assert train.main(args(tiny_mnist, tmp_path, *gated, "--name", "taught", "--teacher",
                           str(tmp_path / "nowhere"))) == 1
    assert "--teacher" in _one_line_error(capsys)
    assert not (tmp_path / "checkpoints" / "taught.safetensors").exists()

    # The model trained is taught by the saved teacher's weights, with the wrong labels asked for
    seen = {}
    real_fit = train.fit

    def fit(model, *a, **kw):
        seen["teacher"], seen["others"] = model.teacher.state_dict(), model.teacher_others
        return real_fit(model, *a, **kw)

    taught = [*gated, "--name", "taught", "--teacher", str(teacher), "--teacher-others", "5"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "fit", fit)
        assert train.main(args(tiny_mnist, tmp_path, *taught)) == 0
    saved = load_file(teacher / "model.safetensors")
    assert seen["others"] == 5 and all(torch.equal(seen["teacher"][k], v) for k, v in saved.items())
    assert load_file(tmp_path / "weights" / "taught" / "model.safetensors").keys() == saved.keys()  # no teacher's
    m = _metrics_of(tmp_path, "taught")
    sha = hashlib.sha256((teacher / "model.safetensors").read_bytes()).hexdigest()
    assert m["teacher"] == {"folder": str(teacher), "sha256": sha, "others": 5}
    card = (tmp_path / "weights" / "taught" / "README.md").read_text()
    assert f"--teacher {teacher} --teacher-others 5" in card and sha[:12] in card

    # Killed, it resumes only with the same teacher, and then ends where the uninterrupted run ended
    _killed_resumes_only_as_started(tiny_mnist, tmp_path, capsys, kill_at, "taught", taught, taught[:-4], "teacher")


def _killed_resumes_only_as_started(tiny_mnist, tmp_path, capsys, kill_at, name, run, other, what) -> None:
    """The run (train.py's arguments) killed at its 12th step, in tmp_path / "again": --resume with the
    arguments `other` is a one-line error that names `what`; with its own, it ends with the weights that
    the uninterrupted run left in tmp_path."""
    done = load_file(tmp_path / "weights" / name / "model.safetensors")
    again = tmp_path / "again"
    disarm = kill_at(12, GatedPixelCNN)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, again, *run))
    disarm()
    capsys.readouterr()
    assert train.main(args(tiny_mnist, again, *other, "--resume")) == 1
    assert what in _one_line_error(capsys)
    assert train.main(args(tiny_mnist, again, *run, "--resume")) == 0
    resumed = load_file(again / "weights" / name / "model.safetensors")
    assert resumed.keys() == done.keys() and all(torch.equal(resumed[k], done[k]) for k in done)


def _metrics_of(tmp: Path, name: str) -> dict:
    return json.loads((tmp / "weights" / name / "metrics.json").read_text())


def test_fit_trains_a_model_handed_over_in_eval_mode(tmp_path):
    """load_model returns a model in eval mode: fine-tuning it must still use the training loss."""
    from pixelcnn.trainer import TrainConfig, fit

    model = GatedPixelCNN(GatedPixelCNNConfig(hidden_channels=4, n_layers=1, label_dropout=1.0)).eval()
    modes = []
    original = model.loss
    model.loss = lambda batch: (modes.append(model.training), original(batch))[1]
    x = (torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    y = torch.zeros(8, dtype=torch.long)
    fit(model, (x, y), (x[:2], y[:2]), TrainConfig(epochs=1, batch_size=4, checkpoint_every=1e9),
        tmp_path / "c.safetensors")
    assert modes == [True, True, False]  # two training steps, then the evaluation


def test_a_checkpoint_made_before_a_model_setting_existed_resumes_at_its_default(tiny_mnist, tmp_path, capsys,
                                                                                kill_at):
    """The flagship's checkpoint predates classify_weight: it had the default (none) then, and resumes."""
    gated = ["--model", "gated_pixelcnn", "--n-layers", "1", "--checkpoint-every", "0"]
    disarm = kill_at(3, GatedPixelCNN)
    with pytest.raises(Killed):
        train.main(args(tiny_mnist, tmp_path, *gated))
    disarm()
    path = tmp_path / "checkpoints" / "pixelcnn.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(metadata["meta"])
    for k in ("classify_weight", "classify_batch"):
        del meta["model_config"][k]  # as a checkpoint of an older train.py has it
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata=dict(metadata, meta=json.dumps(meta)))
    capsys.readouterr()
    assert train.main(args(tiny_mnist, tmp_path, *gated, "--resume", "--classify-weight", "2")) == 1
    assert "model_config.classify_weight 0.0 -> 2.0" in _one_line_error(capsys)
    assert train.main(args(tiny_mnist, tmp_path, *gated, "--resume")) == 0
