"""What CLI tests share: run the command in-process, and check a refusal is one handled line."""

from click.testing import CliRunner

from latency.cli import main


def cli(*args):
    """``latency ARGS`` in this process (paths and numbers given as they are)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, *needles):
    """The CLI answered with exit 2 and exactly one stderr line 'error: ...' containing every needle."""
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit), r.exception  # handled, not escaped
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
