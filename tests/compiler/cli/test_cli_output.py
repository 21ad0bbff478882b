"""Progress on stderr: one plain line per stage, a terminal or not."""

from __future__ import annotations

from bertc.compiler.cli import output


class Status:
    def __init__(self) -> None:
        self.shown: list[str] = []

    def update(self, label: str) -> None:
        self.shown.append(label)


def test_off_a_terminal_the_first_stage_line_waits_for_the_second(capsys) -> None:
    """The first stage checks the inputs: a bad input leaves only its error line."""
    status = Status()
    progress = output.StageLines({"load": "loading checkpoint"}, status, terminal=False)
    progress("load")
    assert capsys.readouterr().err == ""
    progress("export")
    progress("quantize")
    assert capsys.readouterr().err == "• loading checkpoint\n• export\n• quantize\n"
    assert status.shown == ["loading checkpoint", "export", "quantize"]


def test_on_a_terminal_each_line_comes_as_its_stage_starts(capsys) -> None:
    progress = output.StageLines({"load": "loading checkpoint"}, terminal=True)
    progress("load")
    assert "• loading checkpoint" in capsys.readouterr().err
