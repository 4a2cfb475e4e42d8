import json

import pytest
import torch

from flwr_gan.runtime.rundir import RunDirectory, RunDirectoryError, plot_fid_curves, read_metrics


def test_layout_and_records(tmp_path):
    run = RunDirectory(tmp_path / "r", {"a": 1, "nan": float("nan"), "p": tmp_path})
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["a"] == 1 and cfg["nan"] is None and cfg["p"] == str(tmp_path)
    run.log({"round": 0, "fid": 10.0, "score": 1.5, "extractor": "x", "nodes": [1, 2]})
    run.log({"round": 5, "fid": 4.0, "score": 3.0, "extractor": "x", "nodes": [3]})
    recs = run.records()
    assert [r["round"] for r in recs] == [0, 5] and recs[0]["nodes"] == [1, 2]
    csv_text = run.write_csv().read_text().splitlines()
    assert csv_text[0] == "round,fid,score,extractor"  # x and scores first; list "nodes" left out
    assert csv_text[2] == "5,4.0,3.0,x"
    png = run.plot_curves()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = run.save_samples(torch.rand(16, 1, 28, 28) * 2 - 1, 5)
    assert grid.name == "round_000005.png" and grid.stat().st_size > 100


def test_refuses_to_clobber_a_finished_run(tmp_path):
    run = RunDirectory(tmp_path, {})
    run.log({"round": 0})
    with pytest.raises(RunDirectoryError, match="--overwrite"):
        RunDirectory(tmp_path, {})
    resumed = RunDirectory(tmp_path, {}, resume=True)
    assert len(resumed.records()) == 1
    fresh = RunDirectory(tmp_path, {}, overwrite=True)
    assert fresh.records() == []


def test_corrupt_metrics_line_is_named(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"round": 0}\n{broken\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        read_metrics(p)


def test_plot_several_runs(tmp_path):
    runs = {"a": [{"round": 0, "fid": 5.0}, {"round": 1, "fid": 2.0}],
            "b": [{"round": 0, "fid": 6.0}, {"round": 1}]}
    out = plot_fid_curves(runs, tmp_path / "c.png")
    assert out.exists()


def test_resume_drops_records_newer_than_the_checkpoint_atomically(tmp_path):
    from flwr_gan.runtime.experiment import _truncate_metrics
    from flwr_gan.runtime.rundir import RunDirectory

    run = RunDirectory(tmp_path / "r", {"seed": 0})
    for r in range(5):
        run.log({"round": r, "fid": float(r)})
    _truncate_metrics(run, 2)  # killed after logging round 4, checkpoint at round 2
    assert [r["round"] for r in run.records()] == [0, 1, 2]
    assert not list((tmp_path / "r").glob("*.tmp*"))  # nothing left behind


def test_several_runs_share_one_score_axis_and_a_line_style_legend(tmp_path):
    import matplotlib.pyplot as plt

    from flwr_gan.runtime.rundir import fid_figure

    runs = {f"run {k}": [{"round": r, "fid": 9.0 - r - k, "kid": 0.1, "precision": 0.5,
                          "recall": 0.2, "score": 2.0 + r} for r in range(3)] for k in range(4)}
    fig = fid_figure(runs)
    try:
        fid_ax, kid_ax, right, *twins = fig.axes
        assert len(twins) == 1  # one score axis for all runs, not one per run
        assert len(twins[0].get_lines()) == 4 and len(right.get_lines()) == 8
        legend = [t.get_text() for t in right.get_legend().get_texts()]
        assert legend == ["precision", "recall", "score"]
        assert [t.get_text() for t in fid_ax.get_legend().get_texts()] == list(runs)
    finally:
        plt.close(fig)
    assert plot_fid_curves(runs, tmp_path / "c.png").stat().st_size > 10_000
