"""`flwr-gan compare --group/--baseline`: runs over seeds, area under the curve, the gain."""

import json
import math

import pytest
from PIL import Image

from flwr_gan.cli import main
from flwr_gan.config import ConfigError
from flwr_gan.report import compare_runs, load_run
from flwr_gan.report.groups import (
    common_grid,
    convergence_gain,
    fid_auc,
    fid_auc_on,
    smoothed,
    stat,
    summarise_groups,
)
from flwr_gan.report.table import EvalPoint
from tests.test_compare import fl_records, make_run


def points(pairs, virtual=None):
    return [EvalPoint(x, None, None if virtual is None else virtual * x, 0, 0, f)
            for x, f in pairs]


def test_stat_is_mean_sample_std_and_range():
    s = stat([2.0, 4.0, 9.0])
    assert s is not None
    assert s.mean == 5.0 and s.min == 2.0 and s.max == 9.0 and s.n == 3
    assert math.isclose(s.std, math.sqrt(((3**2) + 1 + 16) / 2))
    assert stat([7.0]).std == 0.0  # type: ignore[union-attr]
    assert stat([]) is None


def test_auc_is_the_trapezoid_mean_and_interpolates_its_end():
    pts = points([(0, 1000.0), (10, 500.0), (20, 300.0)])
    assert fid_auc(pts) == pytest.approx((10 * 750 + 10 * 400) / 20)
    # up to x=15: the last segment ends at the interpolated FID 400
    assert fid_auc(pts, upto=15) == pytest.approx((10 * 750 + 5 * 450) / 15)
    assert fid_auc(pts, upto=0) == 1000.0
    # an early fall lowers the area even with the same best value
    late = points([(0, 1000.0), (10, 900.0), (20, 300.0)])
    assert fid_auc(late) > fid_auc(pts)
    with pytest.raises(ValueError, match="outside"):
        fid_auc(pts, upto=25)
    with pytest.raises(ValueError, match="no evaluation"):
        fid_auc([])


def test_one_grid_removes_the_advantage_of_evaluating_more_often():
    # the same falling convex curve, sampled every 1 and every 4: on its own points the
    # sparse run's trapezoids sit above the curve and it looks worse than the dense run
    def curve(x):
        return 100.0 + 900.0 * 0.5 ** x

    dense = points([(x, curve(x)) for x in range(0, 17)])
    sparse = points([(x, curve(x)) for x in range(0, 17, 4)])
    assert fid_auc(sparse) - fid_auc(dense) > 40  # 227 vs 184
    grid = common_grid([dense, sparse])
    assert grid == [0.0, 4.0, 8.0, 12.0, 16.0]
    assert fid_auc_on(dense, grid) == pytest.approx(fid_auc_on(sparse, grid))
    assert fid_auc_on(sparse, grid) == pytest.approx(fid_auc(sparse))
    # runs evaluated at the same points keep their own area, whatever their order
    assert common_grid([dense, dense]) == [float(x) for x in range(17)]
    assert fid_auc_on(dense, common_grid([dense])) == pytest.approx(fid_auc(dense))


def test_the_grid_spans_what_every_run_covers():
    early = points([(0, 900.0), (2, 500.0), (4, 400.0), (6, 350.0), (10, 300.0)])
    late = points([(3, 700.0), (5, 600.0), (8, 500.0), (12, 450.0)])
    grid = common_grid([early, late])
    assert grid[0] == 3.0 and grid[-1] == 10.0  # the latest start, the earliest end
    assert grid in ([3.0, 4.0, 6.0, 10.0], [3.0, 5.0, 8.0, 10.0])  # 4 points either way
    # interpolated ends: early at 3 is 450, late at 10 is 475
    assert fid_auc_on(early, [3.0, 10.0]) == pytest.approx((450 + 300) / 2)
    assert fid_auc_on(late, [10.0]) == pytest.approx(475.0)
    assert common_grid([early, points([(10, 1.0), (20, 2.0)])]) == [10.0]
    with pytest.raises(ValueError, match="do not overlap"):
        common_grid([early, points([(11, 1.0)])])
    with pytest.raises(ValueError, match="leaves the evaluated range"):
        fid_auc_on(late, [0.0, 10.0])
    with pytest.raises(ValueError, match="no evaluation"):
        common_grid([early, []])


def two_configs(tmp_path, *, slow_fids, fast_fids, seeds=(0, 1)):
    """Baseline 'slow' and 'fast' runs for each seed; 0.5 virtual s per round."""
    dirs, groups = [], []
    for seed in seeds:
        for name, fids in (("slow", slow_fids), ("fast", fast_fids)):
            dirs.append(make_run(tmp_path / f"{name}{seed}", "flgan",
                                 fl_records([f + seed for f in fids]), samples=False,
                                 seed=seed, local_steps=1))
            groups.append(name)
    return dirs, groups


def test_gain_is_baseline_time_to_its_best_over_time_to_reach_it(tmp_path):
    # evaluations every 2 rounds; baseline best 400 at round 8 (4 s), the other run reaches
    # <= 400 at round 4 (2 s): gain 2x; a run that never reaches it has no gain
    base = load_run(make_run(tmp_path / "b", "flgan", fl_records([1000, 700, 600, 500, 400]),
                             samples=False, local_steps=1))
    fast = load_run(make_run(tmp_path / "f", "flgan", fl_records([1000, 600, 390, 380, 420]),
                             samples=False, local_steps=1))
    never = load_run(make_run(tmp_path / "n", "flgan", fl_records([1000, 800, 700, 600, 500]),
                              samples=False, local_steps=1))
    g = convergence_gain(base, fast)
    assert (g.target, g.baseline_x, g.reach_x) == (400, 8, 4)
    assert g.baseline_virtual_s == pytest.approx(4.0) and g.reach_virtual_s == pytest.approx(2.0)
    assert g.gain_virtual == pytest.approx(2.0) and g.gain_x == pytest.approx(2.0)
    g = convergence_gain(base, never)
    assert g.reach_x is None and g.gain_virtual is None and g.gain_x is None
    assert convergence_gain(base, base).gain_virtual == pytest.approx(1.0)


def test_groups_pair_by_seed_and_summarise_over_runs(tmp_path):
    dirs, groups = two_configs(tmp_path, slow_fids=[1000, 700, 600, 500, 400],
                               fast_fids=[1000, 600, 390, 380, 420], seeds=(0, 1, 2))
    # give the runs out of order: pairing is by seed, not position
    order = [1, 0, 3, 2, 5, 4]
    runs = [load_run(dirs[i]) for i in order]
    out = summarise_groups(runs, [groups[i] for i in order], baseline="slow")
    by = {g.label: g for g in out}
    assert list(by) == ["fast", "slow"]
    fast, slow = by["fast"], by["slow"]
    assert fast.seeds == (0, 1, 2) and slow.gains == () and fast.reached == 3
    assert all(g.seed == g2 for g, g2 in zip(fast.gains, (0, 1, 2), strict=True))
    assert fast.gain_virtual is not None and fast.gain_virtual.mean == pytest.approx(2.0)
    assert fast.best_fid.mean == pytest.approx(381.0) and fast.best_fid.std == pytest.approx(1.0)
    assert slow.auc.mean > fast.auc.mean
    assert fast.auc_upto == 8 and fast.auc_from == 0 and fast.auc_points == 5


def test_groups_measure_dense_and_sparse_runs_on_one_grid(tmp_path):
    # the same FID curve, evaluated every round and every 4 rounds: equal mean FID
    fids = [1000 * 0.6 ** k + 300 for k in range(9)]
    dense = make_run(tmp_path / "d", "flgan", fl_records(fids, eval_every=1), samples=False,
                     local_steps=1)
    sparse = make_run(tmp_path / "s", "flgan", fl_records(fids[::4], eval_every=4),
                      samples=False, local_steps=1)
    out = {g.label: g for g in summarise_groups([load_run(dense), load_run(sparse)],
                                                ["dense", "sparse"])}
    assert out["dense"].auc_points == 3 and out["dense"].auc_upto == 8
    assert out["dense"].auc.mean == pytest.approx(out["sparse"].auc.mean)
    # a run evaluated only after the dense one ended cannot share a span with it
    records = fl_records([500.0] * 7, eval_every=2)  # rounds 0..12
    late = make_run(tmp_path / "l", "flgan", [r for r in records if r["round"] >= 10],
                    samples=False, local_steps=1)
    with pytest.raises(ConfigError, match="overlap"):
        summarise_groups([load_run(dense), load_run(late)])


def test_compare_writes_the_group_table_figure_and_json(tmp_path, capsys):
    dirs, groups = two_configs(tmp_path, slow_fids=[1000, 700, 600, 500, 400],
                               fast_fids=[1000, 600, 390, 380, 420])
    out = tmp_path / "cmp"
    result = compare_runs(dirs, out, groups=groups, baseline="slow")
    assert [g.label for g in result.groups] == ["slow", "fast"]
    doc = json.loads((out / "compare.json").read_text())
    assert doc["baseline"] == "slow"
    fast = doc["groups"][1]
    assert fast["reached"] == 2 and fast["gain_virtual"]["mean"] == pytest.approx(2.0)
    text = (out / "compare.md").read_text()
    assert "## Over seeds" in text and "gain over slow" in text and "2.00x" in text
    assert "mean FID, round 0–8" in text and "same 5 points for every run" in text
    assert fast["auc_points"] == 5 and fast["auc_from"] == 0 and fast["auc_upto"] == 8
    # seeds differ by design when runs are grouped over them: not a caveat then
    assert "`seed` differs" not in text
    assert "`seed` differs" in "".join(compare_runs(dirs, tmp_path / "plain").notes)
    assert Image.open(out / "groups.png").size[0] > 600
    # the CLI: groups and baseline flags, one line per group
    assert main(["compare", *map(str, dirs), "--out", str(tmp_path / "cli"),
                 "--group", *groups, "--baseline", "slow"]) == 0
    printed = capsys.readouterr().out
    assert "group fast (2 runs)" in printed and "gain over slow 2.00x" in printed
    assert "mean FID over 0-8 " in printed
    # without --group, --baseline names a run label
    result = compare_runs(dirs[:2], tmp_path / "one", labels=["a", "b"], baseline="a")
    assert result.groups[1].gain_virtual is not None
    compare_runs(dirs[:2], tmp_path / "plain")
    assert not (tmp_path / "plain" / "groups.png").exists()


def test_bad_groups_and_baseline_are_one_line_usage_errors(tmp_path, capsys):
    dirs, groups = two_configs(tmp_path, slow_fids=[1000, 500], fast_fids=[1000, 400])
    with pytest.raises(ConfigError, match="--group: 3 group name"):
        compare_runs(dirs, tmp_path / "o", groups=groups[:3])
    with pytest.raises(ConfigError, match="--baseline: 'nope' is not one of the groups"):
        compare_runs(dirs, tmp_path / "o", groups=groups, baseline="nope")
    with pytest.raises(ConfigError, match="non-empty"):
        compare_runs(dirs, tmp_path / "o", groups=["a", " ", "a", "b"])
    assert main(["compare", *map(str, dirs), "--out", str(tmp_path / "o"),
                 "--group", "a", "b", "--baseline", "a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--group: 2 group name(s) for 4 run(s)" in err[0]


def test_smooth_measures_the_gain_on_trailing_means_so_one_dip_does_not_set_it(tmp_path):
    # the baseline dips once to 380 at its 2nd evaluation and otherwise sits near 450;
    # the other run descends steadily to 400. Raw: the dip is the target, never reached.
    dirs, groups = two_configs(tmp_path, slow_fids=[1000, 380, 460, 450, 455],
                               fast_fids=[1000, 600, 430, 400, 400], seeds=(0,))
    runs = [load_run(d) for d in dirs]
    raw = {g.label: g for g in summarise_groups(runs, groups, baseline="slow")}["fast"]
    assert raw.reached == 0 and raw.gains[0].target == pytest.approx(380)
    # trailing means of 3 (evaluations every 2 rounds): slow 1000, 690, 613.3, 430 (round
    # 6), 455 -> target 430; fast 1000, 800, 676.7, 476.7, 410 reaches it at round 8
    sm = {g.label: g for g in summarise_groups(runs, groups, baseline="slow", smooth=3)}
    gain = sm["fast"].gains[0]
    assert gain.smooth == 3 and gain.target == pytest.approx((380 + 460 + 450) / 3)
    assert (gain.baseline_x, gain.reach_x) == (6, 8) and gain.gain_x == pytest.approx(0.75)
    assert [p.fid for p in smoothed(runs[0].points, 1)] == [p.fid for p in runs[0].points]
    out = compare_runs(dirs, tmp_path / "cmp", groups=groups, baseline="slow", smooth=3)
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["smooth"] == 3
    assert out.groups[1].reached == 1
    assert "mean of the last 3 evaluations" in (tmp_path / "cmp" / "compare.md").read_text()


@pytest.mark.parametrize(("smooth", "baseline", "says"), [
    (0, "slow", "--smooth: 0 is invalid"), (2, None, "--smooth 2 applies to the convergence")])
def test_bad_smooth_is_a_usage_error_naming_the_flag(tmp_path, smooth, baseline, says):
    dirs, groups = two_configs(tmp_path, slow_fids=[1000, 500], fast_fids=[1000, 400],
                               seeds=(0,))
    with pytest.raises(ConfigError, match=says.replace("-", r"\-")):
        compare_runs(dirs, tmp_path / "cmp", groups=groups, baseline=baseline, smooth=smooth)
    assert not (tmp_path / "cmp").exists()  # refused before anything was written
