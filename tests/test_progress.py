import io

from rich.console import Console

from ggt.progress import progress_bar


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=120, color_system=None), buf


def test_the_bar_appears_with_its_first_update_only():
    console, buf = _console()
    with progress_bar("synth", console):
        pass  # refused before any work, e.g. by a config error
    assert "synth" not in buf.getvalue() and "0/?" not in buf.getvalue()
    console, buf = _console()
    with progress_bar("synth", console) as update:
        update(3, 10, spent_usd=0.25)
    assert "synth" in buf.getvalue() and "3/10" in buf.getvalue() and "$0.25" in buf.getvalue()
