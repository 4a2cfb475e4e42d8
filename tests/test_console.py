"""Progress and logging that stay readable in a log file."""

import io
import logging

import pytest

from flwr_gan.runtime.console import Progress, configure_logging


def test_off_a_terminal_progress_is_plain_lines_per_tenth_and_per_evaluation():
    out = io.StringIO()
    bar = Progress(100, desc="fegan", unit="round", stream=out)  # StringIO is no TTY
    for n in range(1, 101):
        bar.update(n, {"fid": f"{1000 / n:.1f}"}, milestone=(n == 33))
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [ln.split()[2] for ln in lines] == [
        "10/100", "20/100", "30/100", "33/100", "43/100", "53/100", "63/100", "73/100",
        "83/100", "93/100", "100/100"]
    assert lines[3].startswith("fegan round  33/100 fid 30.3 elapsed ")
    assert lines[-1].endswith("eta 0:00")


def test_a_resumed_run_counts_from_where_it_was_and_disabled_shows_nothing():
    out = io.StringIO()
    bar = Progress(10, initial=8, desc="mdgan", unit="iteration", stream=out)
    bar.update(9)
    bar.update(10)
    assert out.getvalue().splitlines()[-1].startswith("mdgan iteration 10/10")
    quiet = io.StringIO()
    off = Progress(10, stream=quiet, enabled=False)
    off.update(10, milestone=True)
    assert quiet.getvalue() == ""


def test_on_a_terminal_progress_is_a_bar():
    out = io.StringIO()
    bar = Progress(5, desc="gossip", stream=out, interactive=True)
    bar.update(5)
    bar.close()
    assert "\r" in out.getvalue() and "5/5" in out.getvalue()


@pytest.fixture
def restore_logging():
    flwr = logging.getLogger("flwr")
    saved = (flwr.handlers[:], flwr.filters[:], flwr.level, flwr.propagate)
    yield
    flwr.handlers[:], flwr.filters[:], flwr.level, flwr.propagate = saved
    logging.basicConfig(level=logging.WARNING, force=True)


def test_flower_notices_about_our_own_choices_are_dropped_and_real_warnings_kept(
        restore_logging, capsys):
    from flwr.common.logger import log

    configure_logging(verbose=False)
    root = logging.getLogger()
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    log(logging.WARNING, "fraction_evaluate is set to 0.0. Federated evaluation will be skipped.")
    log(logging.WARNING, "Node 7 did not reply")
    log(logging.INFO, "Starting round 1")
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    text = stream.getvalue() + capsys.readouterr().out
    assert text.count("Node 7 did not reply") == 1  # once: Flower's own handler is gone
    assert "\x1b[" not in text
    for gone in ("fraction_evaluate", "Starting round", "SQLiteImpl"):
        assert gone not in text


def test_verbose_keeps_everything(restore_logging):
    from flwr.common.logger import log

    configure_logging(verbose=False)  # an earlier command in the same process
    configure_logging(verbose=True)
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    log(logging.WARNING, "fraction_evaluate is set to 0.0.")
    log(logging.INFO, "Starting round 1")
    assert "fraction_evaluate" in stream.getvalue() and "Starting round 1" in stream.getvalue()


def test_the_eta_ignores_one_time_set_up(monkeypatch):
    clock = iter([0.0, 100.0, 110.0, 110.0])  # start, first record after 100 s of set-up, ...
    monkeypatch.setattr("flwr_gan.runtime.console.time.perf_counter", lambda: next(clock))
    out = io.StringIO()
    bar = Progress(10, desc="fegan", stream=out)
    bar.update(0, milestone=True)  # round 0 is logged once the set-up is done
    bar.update(5, milestone=True)  # 5 rounds in 10 s: 5 more take 10 s, not 110
    assert out.getvalue().splitlines()[-1].endswith("elapsed 1:50 eta 0:10")
