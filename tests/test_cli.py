"""The `flwr-gan` command: flags generated from the settings schema, one-line usage errors.

A new user's tour of mistakes: each is answered with one line naming the flag or
key, the bad value and what is allowed, exit code 2, before Ray starts, and
nothing in --out is touched.
"""

import pytest

from flwr_gan.algorithms import ALGORITHMS, get_algorithm, make_settings
from flwr_gan.cli import main
from flwr_gan.config import ConfigError, key_of


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_help_lists_every_knob_of_the_family_with_its_default(algo, capsys):
    command = ["standalone"] if algo == "standalone" else ["simulate", "--algorithm", algo]
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    family = get_algorithm(algo)
    for f in family.fields():
        assert "--" + key_of(f.name) in text
    default = family.defaults.get("batch_size", 64)
    assert f"(default: {default})" in text


def test_fegan_help_shows_the_paper_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--algorithm", "fegan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.025)" in text and "(default: 30)" in text and "(default: 50)" in text
    assert "--kappa" not in text  # MD-GAN's knobs are not FeGAN's


def test_one_name_per_knob_across_families():
    seen: dict[str, object] = {}
    for family in ALGORITHMS.values():
        for f in family.fields():
            assert seen.setdefault(f.name, f) is f, f.name  # declared once, shared
    assert "d_steps" in seen and "disc_steps" not in seen
    assert "client_cpus" in seen and "num_cpus" not in seen


@pytest.mark.parametrize("args, message", [
    # an abbreviation is not guessed
    (["simulate", "--algo", "mdgan"], "unrecognized arguments: --algo"),
    (["simulate", "--algorithm", "mdgan", "--iter", "5"],
     "unrecognized arguments: --iter 5 (did you mean --iterations?)"),
    (["simulate", "--algorithm", "madgan"], "--algorithm 'madgan' is unknown: choose one of"),
    # every family gets the whole data group: the FeGAN engine's knobs for MD-GAN too
    (["simulate", "--algorithm", "mdgan", "--partition", "fegan", "--max-class", "0"],
     "--max-class: '0' is invalid: expected an integer >= 1"),
    (["simulate", "--algorithm", "mdgan", "--num-clients", "0"],
     "--num-clients: '0' is invalid: expected an integer >= 1"),
    (["simulate", "--fraction", "0"], "--fraction: '0' is invalid: expected a number > 0"),
    (["simulate", "--weighting", "softmax"], "--weighting: 'softmax' is invalid: expected one of"),
    (["simulate", "--algorithm", "mdgan", "--kappa", "many"], "kappa='many' is invalid"),
    (["simulate", "--algorithm", "gossip", "--variant", "p2p"],
     "--variant: 'p2p' is invalid: expected one of 'ddl', 'ddl_ind', 'isolated'"),
    (["simulate", "--lr-g", "nan"], "--lr-g: 'nan' is invalid: expected a number > 0"),
    (["simulate", "--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["simulate", "--eval-seeds", "0"], "--eval-seeds: '0' is invalid: expected an integer >= 1"),
    (["standalone", "--eval-mode", "average"],
     "--eval-mode: 'average' is invalid: expected one of 'eval', 'train', 'recalibrate'"),
    # a data folder that does not exist is not silently replaced by the cache
    (["simulate", "--data-dir", "/no/such/folder"],
     "--data-dir '/no/such/folder' does not exist"),
    # the FeGAN engine cannot fill 176 devices with these settings: said before Ray starts
    (["simulate", "--max-class", "10", "--max-samples", "500"], "devices without samples"),
    (["simulate", "--fegan-draw", "overlap"],
     "--fegan-draw: 'overlap' is invalid: expected one of 'disjoint', 'shared'"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main([*args, "--out", str(out)]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_existing_out_is_refused_before_ray_and_left_alone(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"round": 0}\n')
    assert main(["simulate", "--algorithm", "mdgan", "--out", str(out)]) == 2
    assert "already holds a run" in one_line_error(capsys)
    assert (out / "metrics.jsonl").read_text() == '{"round": 0}\n'
    assert not (out / "config.json").exists()


def test_bad_resume_is_refused_before_ray(tmp_path, capsys):
    assert main(["simulate", "--resume", "--out", str(tmp_path / "empty")]) == 2
    assert "holds no run; nothing to resume" in one_line_error(capsys)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"round": 0}\n')
    (out / "checkpoint.pt").write_bytes(b"garbage")
    # a corrupt checkpoint is a runtime failure: exit 1, one line naming the file
    assert main(["simulate", "--resume", "--out", str(out)]) == 1
    err = one_line_error(capsys)
    assert "checkpoint.pt is corrupt" in err and str(out) in err


def test_verbose_adds_the_traceback(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    (out / "checkpoint.pt").write_bytes(b"garbage")
    assert main(["simulate", "--resume", "--out", str(out), "--verbose"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("key, raw, message", [
    ("local-step", 10, "run config key 'local-step' is unknown (did you mean run config key "
                       "'local-steps'?)"),
    ("load-weighting", "flase", "'load-weighting': 'flase' is invalid: expected true or false"),
    ("local-steps", 2.5, "'local-steps': 2.5 is invalid: expected an integer >= 1"),
    ("rounds", True, "'rounds': True is invalid"),
    ("kappa", "3", "'kappa' does not apply"),  # an MD-GAN key given to FeGAN
])
def test_run_config_is_parsed_strictly(key, raw, message):
    family = get_algorithm("fegan")
    if key == "kappa":
        with pytest.raises(ConfigError, match="is unknown"):
            family.settings({key: raw})
        return
    with pytest.raises(ConfigError) as exc:
        family.settings({key: raw})
    assert message in str(exc.value)


def test_run_config_reads_booleans_and_aliases():
    s = get_algorithm("fegan").settings({"load-weighting": "false", "collect-metadata": "yes",
                                         "rounds": "7"})
    assert s.load_weighting is False and s.collect_metadata is True and s.rounds == 7
    g = get_algorithm("gossip").settings({"sync-every": 4})
    assert g.local_steps == 4  # the slides' K, one knob with FL's E


def test_settings_roundtrip_through_the_run_config():
    s = make_settings("mdgan", iterations=7, kappa="log", crash_schedule=True)
    values = s.to_run_config()
    family = get_algorithm(values.pop("algorithm"))
    assert family.settings(values) == s
