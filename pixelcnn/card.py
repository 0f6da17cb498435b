"""The model card (README.md of a weights folder), written from measured metrics."""

import math

RECIPE_TEST_LOSS = 0.0764  # nats per pixel after 10 epochs, as the recipe reported it

DESCRIPTIONS = {
    "pixelcnn": "the PixelCNN of van den Oord et al. 2016 (arXiv:1606.05328) as in the recipe: "
                "a 7x7 mask-A convolution, then mask-B convolutions with ReLU, then a 1x1 "
                "convolution to one logit per pixel",
    "gated_pixelcnn": "the gated PixelCNN of van den Oord et al. 2016 (arXiv:1606.05328): vertical and "
                      "horizontal stacks (no blind spot), gated tanh x sigmoid activations, residual "
                      "connections in the horizontal stack, and a learned digit-label embedding that is "
                      "dropped at random in training, so the one model is both unconditional and "
                      "class-conditional. Its test loss is the unconditional -log p(x), with the label dropped",
}


def train_command(name: str, cfg: dict, tc: dict, epochs: int | None = None, init_from: dict | None = None,
                  teacher: dict | None = None) -> str:
    """The train.py command line of these settings, with `--epochs epochs` if given (see reproduction)."""
    from .weights import MODEL_TYPES

    args = [f"--name {name}"]
    if cfg["model_type"] != "pixelcnn":
        args.insert(0, f"--model {cfg['model_type']}")
    known = MODEL_TYPES.get(cfg["model_type"])
    default_cfg = vars(known[0]()) if known else {}
    for k, v in cfg.items():
        if k != "model_type" and v != default_cfg.get(k):
            args.append(f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')} {v}")  # a flag
    tc = dict(tc, epochs=tc["epochs"] if epochs is None else epochs)
    for k, default in (("epochs", 10), ("batch_size", 64), ("lr", 1e-3), ("seed", 0), ("lr_schedule", "constant"),
                         ("ema", 0.0)):
        if tc.get(k, default) != default:
            args.append(f"--{k.replace('_', '-')} {tc[k]}")
    if init_from:
        args.append(f"--init-from {init_from['folder']}")
    if teacher:
        args.append(f"--teacher {teacher['folder']} --teacher-others {teacher['others']}")
    return "python train.py " + " ".join(args)


def reproduction(name: str, metrics: dict) -> str:
    """What train.py commands take the steps that trained this model, from the runs in metrics.

    A cosine schedule runs over the `--epochs` of the run: a resumed run that changed them
    stretched it from there, which one fresh run of the final length does not do.
    """
    cfg, tc, runs = metrics["model_config"], metrics["train_config"], metrics["runs"]
    init = metrics.get("init_from")
    command = train_command(name, cfg, tc, init_from=init, teacher=metrics.get("teacher"))
    scratch = "from the weights it started from" if init else "from scratch"
    if tc.get("lr_schedule", "constant") != "cosine":
        return (f"`{command}` trains this model {scratch}, and takes the same steps when stopped and "
                f"continued with `--resume`, even with another `--epochs` (the learning rate is constant).")
    if len(runs) > 1 and not all("epochs" in r for r in runs):  # runs from before they recorded it
        return (f"`{command}` trains this model {scratch} if no run changed `--epochs` on resume "
                f"(these runs did not record it).")
    plans = [runs[0].get("epochs", tc["epochs"])]  # each run's --epochs, where it changed
    clean = True  # every change came once the run before had finished
    for run in runs[1:]:
        if run["epochs"] != plans[-1]:
            clean = clean and run["from_epoch"] == plans[-1] and run.get("from_step", 0) == 0
            plans.append(run["epochs"])
    if len(plans) == 1:
        return (f"`{command}` trains this model {scratch}, and takes the same steps when stopped and continued "
                f"with `--resume`.")
    fresh = (f"A fresh `{command}` does not: its cosine schedule runs once over all {tc['epochs']} epochs, "
             f"so it trains a model like this one, not this one.")
    if not clean:
        return (f"`--epochs` changed before a run had finished, so no sequence of train.py commands takes exactly "
                f"these steps. {fresh}")
    then = "".join(f", then with `--epochs {e} --resume`" for e in plans[1:])
    return (f"`{train_command(name, cfg, tc, plans[0], init)}`{then} (each once the one before has finished) takes the "
            f"steps that trained this model. {fresh}")


def _how_trained(metrics: dict) -> str:
    runs = metrics["runs"]
    devices = sorted({r["device"] for r in runs})
    procs = sorted({r["processes"] for r in runs})
    s = f"on {', '.join(devices)}"
    if procs != [1]:
        s += f" ({', '.join(map(str, procs))} processes, data-parallel)"
    if len(runs) > 1:
        s += f", in {len(runs)} runs: the first started afresh and each later one resumed with `--resume`"
    else:
        s += ", in one run"
    planned = [(r["from_epoch"], r["epochs"]) for r in runs if "epochs" in r]  # not recorded before 2026-11-29
    changes = [(at, e) for (at, e), (_, before) in zip(planned[1:], planned) if e != before]
    if changes:
        s += ("; `--epochs` changed on resume (" + ", ".join(f"to {e} at epoch {at}" for at, e in changes) + ")"
              + (", which stretched the cosine schedule from there" if metrics["train_config"].get("lr_schedule")
                 == "cosine" else ""))
    return s


def _started_from(metrics: dict) -> str:
    """A sentence on the weights the run started from (train.py --init-from), or nothing."""
    init = metrics.get("init_from")
    if not init:
        return ""
    s = f"It started from the weights in `{init['folder']}` (SHA-256 `{init['sha256'][:12]}`"
    if init.get("epochs") is not None:
        s += (f": {init.get('model')} after {init['epochs']} epochs, test loss {init['test_loss']:.4f}, "
              f"{init['wall_time_s'] / 3600:.2f} hours on {', '.join(init['device'])}")
        s += (f"; with them, {(metrics['wall_time_s'] + init['wall_time_s']) / 3600:.2f} hours in all")
    s += ")"
    kept = init.get("kept_their_start")
    if kept:
        names = ", ".join(f"`{k}`" for k in kept[:3]) + (" ..." if len(kept) > 3 else "")
        s += f"; its own weights ({names}) kept the new model's initial values (an embedding's: zero)"
    if init.get("widened_from"):
        s += (f", widened from {init['widened_from']} channels: their weights in the first channels of each "
              f"stack and gate half, the new channels' weights into those zero, so that it started with the "
              f"same logits")
    return s + ".\n"


PIXELS = 28 * 28


def test_figures(metrics: dict) -> list[tuple[str, float]]:
    """(what is measured, nats per pixel) on the test digits: the whole-set evaluation where there is one."""
    ev = metrics.get("evaluation") or {}
    history = metrics.get("history") or [{}]  # an ensemble has none: only its evaluation
    dropped = ev.get("test_loss", history[-1].get("test_loss"))
    if dropped is None:
        return []
    if not _n_labels(metrics["model_config"]):
        return [("-log p(x)", dropped)]
    figures = []
    if "test_loss_orders" in ev:
        figures.append((f"-log p(x), p(x) the mean over the {metrics['model_config']['n_orientations']} orientations "
                        f"and the labels", ev["test_loss_orders"]))
    if "test_loss_marginal" in ev:
        figures.append(("-log p(x), p(x) marginalised over the labels", ev["test_loss_marginal"]))
    if "test_loss_given" in ev:
        figures.append(("-log p(x | the true label)", ev["test_loss_given"]))
    return figures + [("-log p(x) with the label dropped", dropped)]


def front_matter(name: str, metrics: dict) -> str:
    """The card's YAML metadata, with the measured test figures as the Hub's model-index."""
    from huggingface_hub import EvalResult, ModelCardData

    split = f"test ({metrics['data']['test_images']:,} digits)"
    results = [EvalResult(task_type="image-generation", task_name="Density estimation", dataset_type="mnist",
                          dataset_name="MNIST, binarized at 0.5", dataset_split=split, metric_type=kind,
                          metric_name=f"{what}, {unit}", metric_value=round(value, 6))
               for what, nats in test_figures(metrics)
               for kind, unit, value in (("nll", "nats per pixel", nats), ("nll", "nats per image", nats * PIXELS),
                                         ("bpd", "bits per pixel", nats / math.log(2)))]
    data = ModelCardData(library_name="pytorch", license="mit", datasets=["mnist"], model_name=name,
                         tags=["pixelcnn", "mnist", "autoregressive", "image-generation"], eval_results=results)
    return data.to_yaml() + "\n"


def _n_labels(cfg: dict) -> int:
    """A config's labels; an ensemble's are its members'."""
    if cfg.get("model_type") == "ensemble":
        return cfg["members"][0].get("n_labels", 0)
    return cfg.get("n_labels", 0)


def _remeasured(ev: dict, n_labels: int) -> str:
    """What `train.py --evaluate` measured, in a sentence or two."""
    s = f"\nRemeasured with `{ev['command']}`: {ev['test_loss']:.4f} nats per pixel"
    if "test_loss_marginal" in ev:
        s += (f" with the label dropped, and **{ev['test_loss_marginal']:.4f}** "
              f"({ev['test_loss_marginal'] * 784:.1f} nats per image) with p(x) marginalised over "
              f"the {n_labels} labels, each equally likely: p(x) = the mean of p(x | label)")
        if "test_loss_given" in ev:
            s += f"; {ev['test_loss_given']:.4f} given each digit's true label"
        if "bayes_accuracy" in ev:
            s += (f"; as a classifier, argmax over the labels of p(x | label), it reads "
                  f"{ev['bayes_accuracy']:.2%} of the test digits as their true label")
    return s


def ensemble_card(name: str, metrics: dict) -> str:
    """The card of an ensemble (pixelcnn/ensemble.py): its members, and what was measured of it as one model."""
    cfg, members = metrics["model_config"], metrics["members"]
    labelled = _n_labels(cfg) > 0
    ev = metrics.get("evaluation")
    measured = (_remeasured(ev, _n_labels(cfg)) + ".\n" if ev else
                f"\nNot measured yet as one model: `python train.py --name {name} --evaluate` measures it.\n")
    rows = []
    for m in members:
        e = m.get("evaluation") or {}
        figures = " / ".join(f"{e[k]:.4f}" if k in e else "" for k in ("test_loss", "test_loss_marginal",
                                                                            "test_loss_given"))
        bayes = f"{e['bayes_accuracy']:.2%}" if "bayes_accuracy" in e else ""
        rows.append(f"| `{m['name']}` | `{m['weights_sha256'][:12]}` | {m['parameters']:,} | {figures} | {bayes} | "
                    f"{m['wall_time_s'] / 3600:.2f} h on {', '.join(m['devices'])} |")
    use_label = "\nimages = pixelcnn.sample(model, 16, seed=0, label=7)  # sixteen 7s" if labelled else ""
    front = f"---\n{front_matter(name, metrics)}---\n\n" if test_figures(metrics) else ""
    return f"""{front}# {name}

An ensemble of {len(members)} PixelCNNs over 28x28 binarized MNIST digits (a pixel is 1 where its value in
[0, 1] is > 0.5), trained apart and used as one model: p(x{' | label' if labelled else ''}) is the mean of the
members' {'p(x | label)' if labelled else 'p(x)'}. For every pixel it gives the mixture's own P(pixel = 1 | every
pixel before it), each member weighed by how likely it finds those pixels, so it generates, completes and
scores as any model here does ({metrics['parameters']:,} parameters in all; `pixelcnn/ensemble.py`).

## Result
{measured}
## Members

| member | weights SHA-256 | parameters | its test loss: label dropped / marginalised / given the label | its Bayes accuracy | training |
| --- | --- | ---: | --- | ---: | --- |
{chr(10).join(rows)}

It was trained only as its members were: {metrics['wall_time_s'] / 3600:.2f} hours of training and evaluation in
all. `{metrics['command']}` builds it from them. Every figure here was written by `train.py` from what it measured
(`metrics.json`).

## Use

```python
import pixelcnn
model = pixelcnn.load_model("{name}")            # from weights/ in the repo, or a Hub repo id
images = pixelcnn.sample(model, 16, seed=0)      # (16, 1, 28, 28) in {{0, 1}}{use_label}
```

Weights are safetensors (`model.safetensors`, every member's) with the shape in `config.json`; loading unpickles
nothing.
"""


def model_card(name: str, metrics: dict) -> str:
    if metrics["model_config"].get("model_type") == "ensemble":
        return ensemble_card(name, metrics)
    cfg, tc, hist = metrics["model_config"], metrics["train_config"], metrics["history"]
    last = hist[-1]
    labelled = cfg.get("n_labels", 0) > 0
    train_labels = (f", with each digit's label except the {cfg.get('label_dropout', 0):.0%} dropped at random"
                    if labelled else "")
    if cfg.get("classify_weight"):
        train_labels += (f", plus the hybrid term: {cfg['classify_weight']:g} / 784 x -log p(label | image) by "
                         f"Bayes' rule, on {cfg['classify_batch']} digits of each batch")
    teacher = metrics.get("teacher")
    if teacher:
        train_labels += (f"; it learnt not the pixels but the probabilities that `{teacher['folder']}` (SHA-256 "
                         f"`{teacher['sha256'][:12]}`) gives them (distillation), {teacher['others']} digits of "
                         f"each batch also under a wrong label")
    ev = metrics.get("evaluation")
    remeasured = ""
    if ev:
        remeasured = _remeasured(ev, cfg.get("n_labels", 0))
        if "test_loss_orders" in ev:
            each = ", ".join(f"{o} first {v:.4f}" for o, v in ev["test_loss_each_orientation"].items())
            remeasured += (f". Read in each of its {cfg['n_orientations']} orientations (marginalised over the "
                           f"labels): {each}; with p(x) the mean over them, **{ev['test_loss_orders']:.4f}** "
                           f"({ev['test_loss_orders'] * 784:.1f} nats per image)")
        remeasured += ".\n"
    use_label = ("\nimages = pixelcnn.sample(model, 16, seed=0, label=7)  # sixteen 7s"
                 if labelled else "")
    done = len(hist) == tc["epochs"]
    table = "\n".join(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['test_loss']:.4f} | {h['elapsed_s'] / 60:.0f} |"
                      for h in hist)
    status = "" if done else (f"\n**Training in progress: {len(hist)} of {tc['epochs']} epochs done.** "
                              f"These weights are from the last completed epoch.\n")
    return f"""---
{front_matter(name, metrics)}---

# {name}

A PixelCNN over 28x28 binarized MNIST digits (a pixel is 1 where its value in [0, 1] is > 0.5):
{DESCRIPTIONS.get(cfg['model_type'], cfg['model_type'])}. Configuration: `{cfg}`
({metrics['parameters']:,} parameters). For every pixel it gives P(pixel = 1 | every pixel before it
in raster order), so it can generate digits pixel by pixel, complete a partly drawn digit, and score one.
{status}
## Result

Loss on the {metrics['data']['test_images']:,} MNIST test digits after {last['epoch']} epoch{'s' * (last['epoch'] != 1)}:
**{last['test_loss']:.4f} nats per pixel** ({last['test_loss'] * 784:.1f} nats per image;
the recipe reported {RECIPE_TEST_LOSS}). Train loss {last['train_loss']:.4f}: the mean over that epoch's
batches as it trained on them{train_labels}.
{remeasured}
| epoch | train loss | test loss | minutes |
| --- | --- | --- | --- |
{table}

## Training

Adam (lr {tc['lr']}, {tc.get('lr_schedule', 'constant')} schedule), batch {tc['batch_size']}, {tc['epochs']} epochs,
binary cross-entropy, seed {tc['seed']}, on the {metrics['data']['train_images']:,} MNIST training digits.
Trained {_how_trained(metrics)}; {metrics['wall_time_s'] / 3600:.2f} hours of training and evaluation in all.
{_started_from(metrics)}{reproduction(name, metrics)}
Every figure here was written by `train.py` from what it measured (`metrics.json`).

## Use

```python
import pixelcnn
model = pixelcnn.load_model("{name}")            # from weights/ in the repo, or a Hub repo id
images = pixelcnn.sample(model, 16, seed=0)      # (16, 1, 28, 28) in {{0, 1}}{use_label}
```

Weights are safetensors (`model.safetensors`) with the shape in `config.json`; loading unpickles nothing.
"""
