"""A generic trainer: it needs only `model.loss(batch)`, a scalar to minimise.

Data are tuples of tensors (e.g. images, labels) held in memory. Training is resumable to
the step: the shuffling of each epoch is a function of (seed, epoch), and the checkpoint
holds the model, the optimiser, the position in the epoch and the history, in one
safetensors file written atomically. SIGTERM or Ctrl-C stops a run after the step at hand,
with a checkpoint of it (TrainingStopped). Under torchrun it trains data-parallel with DDP.
"""

import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from .weights import atomic_write


class TrainingError(ValueError):
    """An expected failure, said in one line: bad settings, a corrupt checkpoint, one made with other settings."""


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64  # in all, across processes
    lr: float = 1e-3
    seed: int = 0
    eval_batch_size: int = 100  # speed only: on a CPU, 100 runs about twice as fast as 1000
    checkpoint_every: float = 300.0  # seconds between mid-epoch checkpoints
    lr_schedule: str = "constant"  # or "cosine": from lr down to 0 over all the steps
    ema: float = 0.0  # decay of an exponential moving average of the weights, evaluated and saved; 0: none

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise TrainingError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0 <= self.ema < 1:
            raise TrainingError(f"ema must be in [0, 1), got {self.ema!r}")

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of a global step; a function of the step alone, so resuming needs no state."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0)))
        return self.lr


@dataclass
class TrainState:
    """Where training stands; saved in the checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps done in the current epoch
    loss_sum: float = 0.0  # sum of batch losses x batch sizes in the current epoch
    count: int = 0  # images seen in the current epoch
    elapsed: float = 0.0  # seconds of training, over all runs
    history: list = field(default_factory=list)  # one dict per completed epoch
    runs: list = field(default_factory=list)  # one dict per start or resume


class TrainingDiverged(RuntimeError):
    pass


class TrainingStopped(RuntimeError):
    """The run was asked to stop (SIGTERM, SIGINT: Ctrl-C) and did, after checkpointing every step it had done."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class _StopRequests:
    """While fit runs: SIGTERM and SIGINT ask it to stop after the step at hand, instead of killing it.

    A second one stops at once, as without this. Only the main thread can take signals: elsewhere
    (fit called from another thread) this does nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum, self.previous = None, {}

    def _ask(self, signum, frame):
        if self.signum is not None:  # asked twice: stop now
            signal.signal(signum, self.previous[signum])
            signal.raise_signal(signum)
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._ask) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class _LossModule(nn.Module):
    """Lets DDP wrap `model.loss`, so that the gradients are synchronised."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


def _world_size() -> int:
    """How many processes torchrun started (WORLD_SIZE); 1 outside it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def distributed_setup() -> tuple[int, int, torch.device]:
    """Start torch.distributed when run by torchrun; return (rank, world size, device)."""
    world = _world_size()
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def distributed_teardown() -> None:
    """End the process group distributed_setup started, if any, once every process is done with it.

    A process that leaves while the others still hold the group can abort as Python exits (gloo:
    "terminate called without an active exception", SIGABRT; 5 runs in 25 of a two-process toy,
    2 in 25 with destroy_process_group alone, none in 60 with the barrier first). So each process
    waits at a barrier for the rest (rank 0 writes the outputs after the others have finished)
    before the group is destroyed.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        dist.barrier()
    except RuntimeError:  # another process has already gone (a failed start): end this one's all the same
        pass
    dist.destroy_process_group()


def exit_worker(code: int) -> None:
    """Exit with `code`; a torchrun worker (WORLD_SIZE > 1) without the interpreter's own teardown.

    After distributed_teardown, as Python finalises, gloo's threads can still free tensors and abort
    the process (SIGABRT, "terminate called without an active exception", after the outputs are
    written; pytorch/pytorch#179291): 1 of 30 runs of a two-process toy with a loaded CPU. A worker
    has nothing left to do but flush its output, so it ends there, with os._exit.
    """
    if _world_size() > 1:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)


def _all_sum(values: list[float], device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def ema_update(decay: float):
    """AveragedModel's update for an exponential moving average with warm-up.

    The decay of the n-th update is min(decay, (1 + n) / (10 + n)): a plain EMA of decay 0.999
    would still hold 39% of the first step's weights after an epoch of 938 steps, and score
    like an untrained model; with the warm-up the early weights fade as fast as they are left.
    n is AveragedModel's own count, saved in its state, so a resumed run continues exactly.
    """
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        torch._foreach_lerp_(averaged, current, 1 - d)

    return update


# ---- checkpoints ----

def save_checkpoint(path: Path, model, optimizer, state: TrainState, meta: dict, ema=None) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    opt = optimizer.state_dict()
    for idx, s in opt["state"].items():
        for k, v in s.items():
            tensors[f"optim.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    metadata = {"state": json.dumps(asdict(state)), "param_groups": json.dumps(opt["param_groups"]),
                "meta": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _settings(meta: dict) -> dict:
    """meta, flattened to "train_config.lr": ..., less what may change on --resume.

    More epochs, another checkpoint interval or another evaluation batch size do not change
    the steps already taken.
    """
    flat = {}
    for k, v in meta.items():
        for kk, vv in (v.items() if isinstance(v, dict) else [(None, v)]):
            flat[k if kk is None else f"{k}.{kk}"] = vv
    return {k: v for k, v in flat.items() if k not in ("train_config.epochs", "train_config.checkpoint_every",
                                                       "train_config.eval_batch_size")}


def load_checkpoint(path: Path, model, optimizer, device, meta: dict | None = None, ema=None) -> TrainState:
    """Restore model, optimizer (and the weights' average) from path; with meta, first check the settings match."""
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = TrainState(**json.loads(metadata["state"]))
        param_groups = json.loads(metadata["param_groups"])
        saved_meta = json.loads(metadata["meta"])
        # A setting added after the checkpoint was made had its default value then.
        saved_meta["train_config"] = {**asdict(TrainConfig()), **saved_meta.get("train_config", {})}
        if is_dataclass(getattr(model, "config", None)) and "model_config" in saved_meta:
            saved_meta["model_config"] = {**asdict(type(model.config)()), **saved_meta["model_config"]}
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())  # one line
        raise TrainingError(f"{path}: corrupt checkpoint ({reason})") from None
    if meta is not None:
        saved, now = _settings(saved_meta), _settings(meta)
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if changed:
            diffs = ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise TrainingError(f"--resume: {path} was made with other settings ({diffs})")
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as e:
        raise TrainingError(f"{path}: checkpoint does not match the model ({str(e).splitlines()[0]})") from None
    if ema is not None:
        ema_state = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
        try:
            ema.load_state_dict(ema_state, strict=True)
        except RuntimeError as e:
            raise TrainingError(f"{path}: checkpoint's weight average does not match "
                                f"({str(e).splitlines()[0]})") from None
    opt_state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            opt_state.setdefault(int(idx), {})[name] = v.cpu() if name == "step" else v
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": param_groups})
    except (ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"{path}: corrupt checkpoint (optimizer state: {' '.join(str(e).split())})") from None
    return state


# ---- the loop ----

@torch.no_grad()
def evaluate(model, data: tuple[torch.Tensor, ...], batch_size: int, device, rank=0, world=1) -> float:
    """Mean of model.loss over data in eval mode, weighting each batch by its size; sharded across processes."""
    was_training = model.training
    model.eval()
    n = len(data[0])
    idx = torch.arange(rank, n, world)
    total = 0.0
    for start in range(0, len(idx), batch_size):
        b = idx[start:start + batch_size]
        total += model.loss(tuple(t[b].to(device) for t in data)).item() * len(b)
    model.train(was_training)  # as it was: evaluation leaves no trace
    total, count = _all_sum([total, float(len(idx))], device)
    return total / count


def fit(model, train_data: tuple[torch.Tensor, ...], test_data: tuple[torch.Tensor, ...],
        config: TrainConfig, checkpoint_path: str | Path, resume: bool = False,
        on_epoch=None, meta: dict | None = None) -> TrainState:
    """Train model on train_data, evaluating on test_data after every epoch.

    Args:
        model: has .loss(batch) -> scalar; batch is a tuple of tensors.
        config: optimiser and schedule.
        checkpoint_path: where the resumable state is kept.
        resume: continue from checkpoint_path; otherwise start afresh.
        on_epoch: called as on_epoch(model, state) on rank 0 after each epoch, with the model
            that was evaluated: the average of the weights when config.ema is set.
        meta: saved in the checkpoint and checked on resume (e.g. the model config).
    Returns:
        (state, evaluated): the final TrainState, whose history holds per-epoch train and test
        losses, and the model that was evaluated (model, or the average of its weights).
    """
    rank, world, device = distributed_setup()
    if config.batch_size % world:
        raise TrainingError(f"batch size {config.batch_size} is not divisible by {world} processes")
    local_bs = config.batch_size // world
    checkpoint_path = Path(checkpoint_path)
    meta = dict(meta or {}, train_config=asdict(config))

    # DDP copies rank 0's initial weights to the other processes. train(): a loaded model is in eval mode.
    model.to(device).train()
    if device.type == "cpu":
        # Gradients of a few 1e-40 (a hybrid loss's, from labels a softmax all but rules out) are
        # denormal floats, which x86 CPUs handle some 5x slower: measured, a step of 64 images with
        # GatedPixelCNNConfig.classify_weight took 8.0 s with them and 2.3 s flushed to zero.
        torch.set_flush_denormal(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    ema = AveragedModel(model, multi_avg_fn=ema_update(config.ema)) if config.ema else None
    state = TrainState()
    if resume:
        if not checkpoint_path.is_file():
            raise TrainingError(f"--resume: no checkpoint at {checkpoint_path}")
        state = load_checkpoint(checkpoint_path, model, optimizer, device, meta, ema)
    state.runs.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": str(device),
                       "processes": world, "from_epoch": state.epoch, "from_step": state.step,
                       "epochs": config.epochs})

    net = _LossModule(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    n = len(train_data[0])
    per_rank = n // world
    steps = math.ceil(per_rank / local_bs)
    last_save = time.monotonic()
    saved_at = (state.epoch, state.step) if resume else None  # the state in checkpoint_path, if this run's

    def checkpoint():
        nonlocal saved_at
        if rank == 0:
            save_checkpoint(checkpoint_path, model, optimizer, state, meta, ema)
        saved_at = (state.epoch, state.step)

    def stop_if_asked(stop: _StopRequests) -> None:
        """Stop here, with a checkpoint of every step done, if a process was sent SIGTERM or SIGINT."""
        asked = stop.signum is not None
        if world > 1:  # every process stops at the same step, whichever were signalled
            asked = _all_sum([float(asked)], device)[0] > 0
        if asked:
            if saved_at != (state.epoch, state.step):
                checkpoint()
            name = signal.Signals(stop.signum or signal.SIGTERM).name
            raise TrainingStopped(f"stopped by {name} after {state.epoch} epochs and {state.step} steps; "
                                  f"{checkpoint_path} holds them all: continue with --resume",
                                  stop.signum or signal.SIGTERM)

    with _StopRequests() as stop:  # SIGTERM, Ctrl-C: stop after the step, nothing lost
        while state.epoch < config.epochs:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 100003 + state.epoch))
            shard = perm[rank::world][:per_rank]
            bar = tqdm(range(state.step, steps), initial=state.step, total=steps, disable=rank != 0,
                       desc=f"epoch {state.epoch + 1}/{config.epochs}", mininterval=1.0, dynamic_ncols=True)
            for step in bar:
                t0 = time.monotonic()
                global_step = state.epoch * steps + step
                # The model's own randomness (e.g. label dropout) is a function of the step too.
                torch.manual_seed(config.seed * 1_000_003 + global_step * 101 + rank)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr_at(global_step, config.epochs * steps)
                b = shard[step * local_bs:(step + 1) * local_bs]
                loss = net(tuple(t[b].to(device, non_blocking=True) for t in train_data))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # Checked after backward, on gradients that DDP has averaged: every process stops together,
                # and a finite loss with an infinite gradient stops too, before the step spoils the weights.
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
                if not (torch.isfinite(loss) & torch.isfinite(grad_norm)):  # one sync with the device
                    where = (f"The last good state ({saved_at[0]} epochs and {saved_at[1]} steps done) is in "
                             f"{checkpoint_path}" if saved_at else "No checkpoint was saved by this run")
                    raise TrainingDiverged(f"loss {loss.item()}, gradient norm {grad_norm.item()} at epoch "
                                           f"{state.epoch + 1}, step {step}; stopped. {where}")
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model)
                state.step = step + 1
                state.loss_sum += loss.item() * len(b)
                state.count += len(b)
                state.elapsed += time.monotonic() - t0
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{state.loss_sum / state.count:.4f}")
                if time.monotonic() - last_save > config.checkpoint_every and state.step < steps:
                    checkpoint()
                    last_save = time.monotonic()
                if state.step < steps:  # after the last step, the epoch's end first
                    stop_if_asked(stop)
            bar.close()

            t0 = time.monotonic()
            loss_sum, count = _all_sum([state.loss_sum, float(state.count)], device)
            evaluated = model if ema is None else ema.module
            test_loss = evaluate(evaluated, test_data, config.eval_batch_size, device, rank, world)
            state.elapsed += time.monotonic() - t0
            state.history.append({"epoch": state.epoch + 1, "train_loss": loss_sum / count,
                                  "test_loss": test_loss, "elapsed_s": round(state.elapsed, 1)})
            state.epoch, state.step, state.loss_sum, state.count = state.epoch + 1, 0, 0.0, 0
            checkpoint()
            last_save = time.monotonic()
            if rank == 0 and on_epoch is not None:
                on_epoch(evaluated, state)
            if state.epoch < config.epochs:
                stop_if_asked(stop)
    return state, model if ema is None else ema.module
