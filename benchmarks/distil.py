"""Does distillation from a better teacher make a better model of the same cost? Fine-tunes, side by side.

    python benchmarks/distil.py                          # the flagship taught by the 48x2 ensemble, 3 rows
    python benchmarks/distil.py --others 0 16 --steps 300 --test 2000 --jobs 2 --threads 1

Every row starts from the same trained model (--init, default the flagship) and fine-tunes it
with the project's trainer (pixelcnn.fit) for the same --steps batches of 64 (the same digits,
shuffled the same way, the same learning rate). The control learns from the pixels, as the
model was trained; the other rows from --teacher's probabilities of every pixel
(GatedPixelCNN.distil_from), with the first K images of each batch also under a wrong label
(K = --others). It then scores the first --test test digits as benchmarks/hybrid.py does:
-log p(x | true label) and -log p(x) marginalised over the labels, in nats per pixel; Bayes
classification argmax_y p(x | y), its accuracy; and -log p(true label | x), in nats per digit.

Each row is written to --out/ROW-STEPSsteps-TESTtest.json when measured and reused on the next
run (pass --fresh to measure again). Prints a markdown table.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from hybrid import fine_tune, model_scores  # noqa: E402  (benchmarks/hybrid.py: the same steps and figures)
from jobs import add_row_arguments, run_in_processes, write_row  # noqa: E402  (benchmarks/jobs.py)

CONTROL = "pixels"  # the row that learns from the pixels


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", default="gated-pixelcnn-5x5", help="the labelled model every row starts from")
    p.add_argument("--teacher", default="gated-pixelcnn-5x5-48x2", help="the model whose probabilities are learnt")
    p.add_argument("--others", type=int, nargs="+", default=[0, 16], metavar="K",
                   help="a taught row for each K: images of each batch also under a wrong label (default: %(default)s)")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps of batch 64 per row")
    p.add_argument("--lr", type=float, default=2e-4, help="constant learning rate (default: %(default)s)")
    add_row_arguments(p, out="results/distil", test=2000)
    p.add_argument("--one", help=argparse.SUPPRESS)  # run one row in this process (what the jobs do)
    return p.parse_args(argv)


def rows(args) -> list[str]:
    return [CONTROL] + [f"others-{k}" for k in args.others]


def result_path(args, row: str) -> Path:
    teacher = "" if row == CONTROL else f"{args.teacher}-"
    return Path(args.out) / f"{teacher}{row}-{args.steps}steps-{args.test}test.json"


def run_row(args, row: str) -> dict:
    import torch

    import pixelcnn
    from pixelcnn.weights import local_folder, weights_sha256

    torch.set_num_threads(args.threads)
    model = pixelcnn.load_model(args.init)
    taught = row != CONTROL
    if taught:
        model.distil_from(pixelcnn.load_model(args.teacher), others=int(row.split("-")[1]))
    return {"row": row, "init": args.init, "init_sha256": weights_sha256(local_folder(args.init)),
            "teacher": args.teacher if taught else None,
            "teacher_sha256": weights_sha256(local_folder(args.teacher)) if taught else None,
            **fine_tune(model, args)}


def start_scores(args, name: str) -> dict:
    """The figures of a model as it is (the start, or the teacher), kept in --out."""
    return model_scores(args, name, Path(args.out) / f"{name}-{args.test}test.json")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        write_row(result_path(args, args.one), run_row(args, args.one))
        return 0
    todo = [r for r in rows(args) if args.fresh or not result_path(args, r).is_file()]

    def command(row):
        return [sys.executable, __file__, "--one", row, "--init", args.init, "--teacher", args.teacher,
                "--steps", str(args.steps), "--lr", str(args.lr), "--test", str(args.test),
                "--data-dir", args.data_dir, "--out", args.out, "--threads", str(args.threads),
                "--jobs", str(args.jobs)]

    if run_in_processes(todo, command, lambda r: r, args.threads, args.jobs, doing="fine-tuning"):
        return 1
    print(table(args, start_scores(args, args.init), start_scores(args, args.teacher)))
    return 0


def table(args, start: dict, teacher: dict) -> str:
    done = [json.loads(result_path(args, r).read_text()) for r in rows(args) if result_path(args, r).is_file()]
    lines = [f"Each row: {args.init} fine-tuned {args.steps} steps of batch 64 (Adam, lr {args.lr:g} constant) on "
             f"the pixels, or on the probabilities of {args.teacher} (K of each batch also under a wrong label); "
             f"first {args.test:,} test digits. Nats per pixel for the likelihoods, nats per digit for "
             f"-log p(label | x).", "",
             "| learns from | given label | marginalised | Bayes accuracy | -log p(label \\| x) | s/step |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]

    def line(name, r, seconds=""):
        return (f"| {name} | {r['given_label']:.4f} | {r['marginal']:.4f} | {r['bayes_accuracy']:.2%} | "
                f"{r['label_nats']:.4f} | {seconds} |")

    lines.append(line(f"(before fine-tuning: {args.init})", start))
    for r in done:
        name = "the pixels (control)" if r["row"] == CONTROL else f"the teacher, K = {r['row'].split('-')[1]}"
        lines.append(line(name, r, f"{r['train_seconds'] / r['steps']:.2f}"))
    lines.append(line(f"(the teacher: {args.teacher})", teacher))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
