"""benchmarks/bench_sampling.py: --against REV (a commit's sampler timed in turn with the working tree's), --guesses."""

import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_sampling  # noqa: E402

needs_git = pytest.mark.skipif(subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode,
                               reason="needs the project's git history")


@needs_git
def test_against_a_revision_times_both_samplers_and_finds_the_same_pixels(capsys):
    code = bench_sampling.main(["--random", "gated_pixelcnn", "--sizes", "1", "2", "--repeats", "1",
                                "--plain-pixels", "1", "--big", "0", "--threads", "1", "--against", "HEAD"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith("| random gated_pixelcnn |")]
    assert len(rows) == 4  # two sizes in the plain/cached table, two in the --against table
    against = out.split("The cached sampler at HEAD and now")[1]
    assert "| model | digits | HEAD (ms) | now (ms) | speed-up | same pixels |" in against
    assert against.count("| yes |") == 2 and "NO" not in against


@needs_git
def test_against_an_unknown_revision_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as e:
        bench_sampling.main(["--random", "pixelcnn", "--against", "no-such-revision"])
    assert e.value.code == 2
    assert "--against no-such-revision: could not read pixelcnn/ at that revision" in capsys.readouterr().err


def test_guesses_time_small_batches_pixel_by_pixel_and_by_rows_and_count_the_passes(capsys):
    code = bench_sampling.main(["--random", "gated_pixelcnn", "pixelcnn", "--sizes", "1", "2", "16", "--repeats", "1",
                                "--plain-pixels", "1", "--big", "0", "--threads", "1", "--guesses"])
    out = capsys.readouterr().out
    assert code == 0, out
    table = out.split("pixel by pixel, and a row guessed")[1]
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| random ")]
    names = [(r[0].strip(), r[1].strip()) for r in rows]
    assert names == [(f"random {kind}", n) for kind in ("gated_pixelcnn", "pixelcnn")
                     for n in ("1", "2")]  # 16 is drawn pixel by pixel anyway
    for r in rows:
        passes = float(r[5])
        assert 1 <= passes <= 28, r  # at least one pass a row, at most one a pixel
        assert r[6].strip() == "yes"
    assert bench_sampling.pixelcnn.sampling.GUESS_UP_TO > 0  # restored
    assert bench_sampling.pixelcnn.sampling._Drawing._run_row.__name__ == "_run_row"
