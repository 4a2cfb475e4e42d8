"""`flwr-gan` dispatch: subcommands and `simulate --algorithm mdgan`."""

import pytest

from flwr_gan.cli import _mdgan_argv, main


def test_mdgan_argv_split():
    assert _mdgan_argv(["-v", "simulate", "--algorithm", "mdgan", "--kappa", "log"]) == (
        ["-v"], ["--kappa", "log"])
    assert _mdgan_argv(["simulate", "--algorithm=mdgan"]) == ([], [])
    assert _mdgan_argv(["simulate", "--algorithm", "fegan"]) is None
    assert _mdgan_argv(["standalone", "--algorithm", "mdgan"]) is None


def test_mdgan_help_lists_its_own_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--algorithm", "mdgan", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--kappa", "--disc-steps", "--swap-epochs", "--iterations", "--crash-schedule"):
        assert flag in out


def test_mdgan_bad_config_is_explained_before_ray_starts(tmp_path, capsys):
    rc = main(["simulate", "--algorithm", "mdgan", "--num-clients", "0",
               "--out", str(tmp_path / "r"), "--no-progress"])
    assert rc == 2
    captured = capsys.readouterr()
    assert "num" in (captured.out + captured.err).lower()
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_simulate_help_mentions_mdgan(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "mdgan" in capsys.readouterr().out
