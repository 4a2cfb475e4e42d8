"""`flwr-gan compare`: normalising run records, thresholds, outputs, errors, the CLI.

Run directories are written with the project's own RunDirectory and records shaped
like the real ones (bench/results/*_runs and fresh runs of each family).
"""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from flwr_gan.algorithms import ALGORITHMS
from flwr_gan.cli import main
from flwr_gan.config import ConfigError
from flwr_gan.report import compare_runs, load_run, summarise
from flwr_gan.report.compare import default_threshold, first_reaching
from flwr_gan.report.runs import load_runs, unique_labels
from flwr_gan.report.table import CLOCK_COMPUTE, CLOCK_VIRTUAL, UNITS, normalise
from flwr_gan.runtime.rundir import RunDirectory, read_metrics

REPO = Path(__file__).resolve().parents[1]
EXTRACTOR = "classifier:mnist"


def scores(fid, *, kid=True, seed_std=2.0):
    """The evaluation fields of the current evaluator (kid etc. optional)."""
    out = {"fid": fid, "score": 2.0, "extractor": EXTRACTOR, "fid_seed_std": seed_std,
           "eval_s": 1.0}
    if kid:
        out |= {"kid": fid / 10, "kid_std": 0.5, "precision": 0.5, "recall": 0.25,
                "class_tv": 0.1, "classes_missing": [3]}
    return out


def fl_records(fids, *, eval_every=2, up=1000, down=2000, virtual=0.5, kid=True):
    """FL-GAN / FeGAN: per-round traffic and virtual_s; fid on evaluation rounds."""
    records = [{"round": 0, "wall_s": 0.0, "virtual_s": 0.0, "elapsed_s": 1.0}
               | scores(fids[0], kid=kid)]
    for r in range(1, eval_every * (len(fids) - 1) + 1):
        rec = {"round": r, "bytes_up": up, "bytes_down": down, "virtual_s": virtual,
               "wall_s": 2 * virtual, "compute_s": {"partition-0": virtual},
               "compute_s_max": virtual, "elapsed_s": 1.0 + r, "d_loss": 0.7, "g_loss": 0.7}
        if r % eval_every == 0:
            rec |= scores(fids[r // eval_every], kid=kid)
        records.append(rec)
    return records


def gossip_records(fids, *, local_steps=10, eval_every=2, up=500, down=1000, virtual=0.25):
    """Gossip: round, iteration = round * K, p2p_bytes, virtual_total_s, scores over workers."""
    records, total = [], 0.0
    for r in range(eval_every * (len(fids) - 1) + 1):
        step = virtual if r else 0.0
        total += step
        rec = {"round": r, "iteration": r * local_steps, "variant": "ddl",
               "bytes_up": up if r else 0, "bytes_down": down if r else 0,
               "p2p_bytes": up // 2 if r else 0, "fl_bytes": 4 * up, "virtual_s": step,
               "virtual_total_s": total, "wall_s": step, "wall_total_s": total}
        if r % eval_every == 0:
            fid = fids[r // eval_every]
            rec |= scores(fid) | {"fid_best": fid - 5, "fid_worst": fid + 5, "fid_std": 4.0,
                                  "fid_workers": {"partition-0": fid - 5},
                                  "eval_bytes": 99999}
        records.append(rec)
    return records


def standalone_records(fids, *, every=20, kid=True):
    """Standalone: round == step, cumulative compute_s, no traffic."""
    return [{"round": i * every, "step": i * every, "compute_s": 3.0 * i,
             "examples": 64 * i * every, "elapsed_s": 5.0 * i} | scores(f, kid=kid)
            for i, f in enumerate(fids)]


def make_run(path, algorithm, records, *, samples=True, **config):
    cfg = {"algorithm": algorithm, "dataset": "mnist", "fid_backend": "classifier",
           "model": "small", "seed": 0, "n_eval": 200, "data_dir": ""} | config
    run = RunDirectory(path, cfg)
    for rec in records:
        run.log(rec)
    if samples:
        prefix = "step" if algorithm == "standalone" else "round"
        last = max(r.get("round", 0) for r in records)
        for x in (0, last):
            run.save_samples(torch.rand(64, 1, 28, 28) * 2 - 1, x, prefix=prefix)
    return Path(path)


def rows(records):
    return list(enumerate(records, 1))


# -- normalising records ---------------------------------------------------------

def test_units_match_the_registry():
    for name, algo in ALGORITHMS.items():
        assert UNITS.get(name, "round") == algo.unit


def test_fl_bytes_and_virtual_time_are_cumulative_over_every_round():
    points, totals = normalise(rows(fl_records([900.0, 600.0, 400.0])), algorithm="flgan",
                               local_steps=5)
    assert [p.x for p in points] == [0, 2, 4]
    assert [p.iterations for p in points] == [0, 10, 20]
    assert [p.bytes_up for p in points] == [0, 2000, 4000]
    assert [p.bytes_down for p in points] == [0, 4000, 8000]
    assert [p.virtual_s for p in points] == [0.0, 1.0, 2.0]
    assert points[1].fid_band() == (598.0, 602.0) and points[1].kid_band() == (59.5, 60.5)
    assert points[1].classes_missing == (3,)
    assert (totals.x, totals.bytes_up, totals.virtual_s, totals.clock) == (4, 4000, 2.0,
                                                                          CLOCK_VIRTUAL)


def test_old_and_new_mdgan_schemas_give_the_same_clock():
    per_iter = [0.0, 0.5, 0.25, 1.0]
    new, old, running = [], [], 0.0
    for it, step in enumerate(per_iter):
        running += step
        base = {"round": it, "iteration": it, "bytes_up": 100 * it, "bytes_down": 200 * it}
        if it in (0, 3):
            base |= scores(500.0 - it)
        new.append(base | {"virtual_s": step, "virtual_total_s": running})
        # before e0b7f58: virtual_s was the running total, iter_virtual_s the iteration's own
        old.append(base | {"virtual_s": running, "iter_virtual_s": step} if it else
                   base | {"virtual_s": 0.0})
    for records in (new, old):
        points, totals = normalise(rows(records), algorithm="mdgan")
        assert [p.x for p in points] == [0, 3] and points[-1].iterations == 3
        assert points[-1].virtual_s == pytest.approx(1.75)
        assert points[-1].bytes_up == 600 and totals.bytes_down == 1200


def test_gossip_counts_iterations_and_keeps_the_workers_spread():
    points, totals = normalise(rows(gossip_records([800.0, 500.0])), algorithm="gossip")
    assert [(p.x, p.iterations) for p in points] == [(0, 0), (2, 20)]
    assert points[-1].fid_band() == (495.0, 505.0)  # best..worst worker, before the seed std
    assert points[-1].fid_workers_std == 4.0
    assert points[-1].bytes_up == 1000  # eval_bytes are not round traffic
    assert totals.p2p_bytes == 500 and totals.virtual_s == pytest.approx(0.5)


def test_standalone_time_is_its_training_compute():
    points, totals = normalise(rows(standalone_records([900.0, 700.0, 650.0])),
                               algorithm="standalone")
    assert [p.virtual_s for p in points] == [0.0, 3.0, 6.0]
    assert all(p.bytes_up == 0 for p in points)
    assert (totals.clock, totals.traffic, totals.bytes_up) == (CLOCK_COMPUTE, False, 0)


def test_committed_old_mdgan_run_totals():
    """A real run of the old schema: the summed iteration seconds equal its running total."""
    run = load_run(REPO / "bench/results/mdgan_runs/MD_GAN_kappa_1")
    records = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()
               if line]
    assert run.totals.virtual_s == pytest.approx(records[-1]["virtual_s"], rel=1e-9)
    assert run.unit == "iteration" and [p.x for p in run.points] == [0, 250, 500, 750, 1000]
    assert run.totals.bytes_up == sum(r["bytes_up"] for r in records) > 1000 * 1_000_000
    assert run.points[1].bytes_up == sum(r["bytes_up"] for r in records[:251])
    assert run.family == "mdgan (kappa=1)" and run.samples.name == "round_001000.png"


# -- summaries and thresholds -------------------------------------------------------

def test_threshold_crossing_best_and_final(tmp_path):
    fl = load_run(make_run(tmp_path / "fl", "flgan", fl_records([900.0, 400.0, 300.0, 350.0]),
                           local_steps=5))
    sa = load_run(make_run(tmp_path / "sa", "standalone",
                           standalone_records([900.0, 700.0, 500.0])))
    threshold, rule = default_threshold([fl, sa])
    assert threshold == pytest.approx(1.5 * 350.0) and "fl" in rule
    s = summarise(fl, threshold)
    assert (s.best_fid, s.best_x, s.final_fid, s.final_x) == (300.0, 4, 350.0, 6)
    assert s.reach is not None and (s.reach.x, s.reach.iterations) == (2, 10)
    assert (s.reach.virtual_s, s.reach.bytes_up, s.reach.bytes_down) == (1.0, 2000, 4000)
    assert (s.total_bytes_up, s.total_bytes_down, s.total_iterations) == (6000, 12000, 30)
    assert (s.best_kid, s.best_kid_x, s.final_kid, s.final_kid_std) == (30.0, 4, 35.0, 0.5)
    assert summarise(sa, threshold).reach is not None  # 500 <= 525 at step 40
    assert summarise(sa, 499.0).reach is None
    assert first_reaching(fl.points, 1000.0).x == 0


def test_compare_writes_figure_samples_markdown_and_json(tmp_path):
    dirs = [make_run(tmp_path / "fl", "flgan", fl_records([900.0, 400.0, 300.0]), local_steps=5),
            make_run(tmp_path / "go", "gossip", gossip_records([900.0, 450.0]), local_steps=10),
            make_run(tmp_path / "sa", "standalone", standalone_records([900.0, 600.0]),
                     train_size=60000)]
    (dirs[1] / "summary.json").write_text(json.dumps({"local_sizes": {"partition-0": 1,
                                                                      "partition-1": 402}}))
    result = compare_runs(dirs, tmp_path / "out", threshold=500.0)
    for name in ("compare.png", "samples.png", "compare.md", "compare.json"):
        assert (tmp_path / "out" / name).is_file()
    with_kid = Image.open(tmp_path / "out" / "compare.png")
    with_kid.verify()
    assert Image.open(tmp_path / "out" / "samples.png").size[0] > 600
    doc = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert doc["threshold"] == 500.0 and doc["threshold_rule"] == "given (--threshold)"
    go = doc["runs"][1]
    assert go["reach"] == {"x": 2, "iterations": 20, "virtual_s": 0.5, "bytes_up": 1000,
                           "bytes_down": 2000}
    assert go["total_p2p_bytes"] == 500 and go["final_fid_worst"] == 455.0
    assert doc["runs"][2]["clock"] == "compute" and doc["runs"][2]["total_bytes_up"] == 0
    assert len(doc["runs"][0]["points"]) == 3
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| fl | flgan | 3 | 300.0 at round 4 | 300.0 ± 2 at round 4 |" in md
    assert "450.0 at round 2 (workers 445.0–455.0)" in md and "best KID" in md
    assert "FID ≤ 500" in md and "![" in md
    assert any("different units" in n for n in result.notes)
    assert "training images in all: 403 (go), 60000 (sa)" in md  # fl records none
    assert [r["train_images"] for r in doc["runs"]] == [None, 403, 60000]
    # without KID in one run the KID row is left out: a shorter figure
    make_run(tmp_path / "nokid", "flgan", fl_records([900.0, 500.0], kid=False), local_steps=5)
    loose = compare_runs([dirs[0], tmp_path / "nokid"], tmp_path / "out2", threshold=950.0)
    assert any("before training" in n for n in loose.notes)  # 900 at round 0 <= 950
    assert Image.open(tmp_path / "out2" / "compare.png").size[1] < with_kid.size[1]
    assert "| nokid | flgan | 2 | 500.0 at round 2 | 500.0 ± 2 at round 2 | – | – |" in (
        tmp_path / "out2" / "compare.md").read_text()


def test_labels_are_unique_and_can_be_given(tmp_path):
    a = make_run(tmp_path / "a" / "run", "flgan", fl_records([900.0, 500.0]), samples=False)
    b = make_run(tmp_path / "b" / "run", "flgan", fl_records([800.0, 450.0]), samples=False)
    assert [r.label for r in load_runs([a, b])] == ["a/run", "b/run"]
    assert unique_labels([Path("x/r"), Path("x/r")]) == ["x/r", "x/r #2"]
    assert [r.label for r in load_runs([a, b], ["FL", "FL2"])] == ["FL", "FL2"]
    with pytest.raises(ConfigError, match=r"1 label\(s\) for 2 run\(s\)"):
        load_runs([a, b], ["one"])
    with pytest.raises(ConfigError, match="unique"):
        load_runs([a, b], ["same", "same"])
    result = compare_runs([a, b], tmp_path / "out")
    assert result.runs[0].samples is None  # no grid: a placeholder panel, no failure


# -- refusals and errors ------------------------------------------------------------

def test_different_datasets_are_refused_unless_forced(tmp_path):
    a = make_run(tmp_path / "m", "flgan", fl_records([900.0, 500.0]))
    b = make_run(tmp_path / "f", "flgan", fl_records([900.0, 500.0]), dataset="fashion-mnist")
    with pytest.raises(ConfigError, match=r"different data sets: mnist \(m\), fashion-mnist "
                                          r"\(f\).*--force"):
        compare_runs([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = compare_runs([a, b], tmp_path / "out", force=True)
    assert result.mismatches and "Forced comparison" in (tmp_path / "out/compare.md").read_text()


def test_different_extractors_are_refused(tmp_path):
    a = make_run(tmp_path / "c", "standalone", standalone_records([900.0, 500.0]))
    recs = [r | {"extractor": "inception-v3-pool3"} for r in standalone_records([90.0, 50.0])]
    b = make_run(tmp_path / "i", "standalone", recs, fid_backend="inception")
    with pytest.raises(ConfigError, match=r"feature extractors: classifier:mnist \(c\), "
                                          r"inception-v3-pool3 \(i\)"):
        compare_runs([a, b], tmp_path / "out")


def test_runs_scored_by_different_trainings_of_the_classifier_are_refused(tmp_path):
    """Same extractor name, other weights (another cache): FIDs on other scales."""
    a = make_run(tmp_path / "a", "standalone",
                 [r | {"extractor_id": "aaaa"} for r in standalone_records([900.0, 500.0])])
    b = make_run(tmp_path / "b", "standalone",
                 [r | {"extractor_id": "bbbb"} for r in standalone_records([900.0, 400.0])])
    with pytest.raises(ConfigError, match=r"feature extractors: classifier:mnist@aaaa \(a\), "
                                          r"classifier:mnist@bbbb \(b\)"):
        compare_runs([a, b], tmp_path / "out")
    c = make_run(tmp_path / "c", "standalone",
                 [r | {"extractor_id": "aaaa"} for r in standalone_records([800.0, 450.0])])
    assert compare_runs([a, c], tmp_path / "ok").runs  # same weights: comparable


def test_bad_run_directories_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="no such run directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json and no metrics.jsonl"):
        load_run(tmp_path / "empty")
    run = make_run(tmp_path / "corrupt", "flgan", fl_records([900.0, 500.0]), samples=False)
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"round": 5, "fid": \n')
    with pytest.raises(ConfigError, match=r"metrics.jsonl line 4 is not valid JSON"):
        load_run(run)
    run = make_run(tmp_path / "list", "flgan", [{"round": 0}], samples=False)
    (run / "metrics.jsonl").write_text('{"round": 0, "fid": 9.0}\n[1, 2]\n')
    with pytest.raises(ConfigError, match="line 2 is not a JSON object"):
        load_run(run)
    run = make_run(tmp_path / "noeval", "flgan",
                   [{"round": 1, "bytes_up": 5, "virtual_s": 0.1}], samples=False)
    with pytest.raises(ConfigError, match="has no evaluation"):
        load_run(run)
    good = make_run(tmp_path / "good", "flgan", fl_records([900.0, 500.0]), samples=False)
    with pytest.raises(ConfigError, match="threshold"):
        compare_runs([good], tmp_path / "o", threshold=0.0)
    with pytest.raises(ConfigError, match="one of the run directories"):
        compare_runs([good], good)


# -- the command, end to end --------------------------------------------------------

def test_cli_compares_a_real_standalone_run_and_a_federated_one(tmp_path, capsys):
    sa = tmp_path / "sa"
    assert main(["standalone", "--steps", "2", "--eval-every", "0", "--n-eval", "200",
                 "--eval-seeds", "1", "--batch-size", "16", "--max-train", "1000",
                 "--out", str(sa), "--no-progress"]) == 0
    # the federated run was scored by the same cached classifier (the same weights digest)
    weights = read_metrics(sa / "metrics.jsonl")[0]["extractor_id"]
    fl = make_run(tmp_path / "fl", "flgan",
                  [r | ({"extractor_id": weights} if "fid" in r else {})
                   for r in fl_records([1200.0, 900.0, 700.0])], local_steps=1)
    out = tmp_path / "cmp"
    capsys.readouterr()
    assert main(["compare", str(sa), str(fl), "--out", str(out), "--label", "SA", "FL"]) == 0
    text = capsys.readouterr().out
    assert "compared 2 runs" in text and "SA: best FID" in text
    doc = json.loads((out / "compare.json").read_text())
    sa_row = doc["runs"][0]
    assert sa_row["label"] == "SA" and sa_row["unit"] == "step" and sa_row["final_x"] == 2
    assert sa_row["extractor"] == f"{EXTRACTOR}@{weights}" and sa_row["clock"] == "compute"
    assert Image.open(out / "samples.png").size[0] > 300
    assert main(["compare", str(sa), str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nope: no such run directory" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(sa), "--out", str(out), "--label", "a", "b"]) == 2
    assert main(["compare", "--out", str(out)]) == 2
