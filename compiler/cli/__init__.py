"""`bertc`: the command line. It only parses, calls the pipeline and prints.

`app` (the Typer app, `--version`, `main()` and its error → exit-code mapping), `artifact`
(compile, verify, run, inspect, pack, unpack), `training` (finetune and its grid, distill, prune),
`options` (the flags they share, checked as they are parsed) and `output` (stdout for results,
stderr for progress and notes). Expected failures print one line and exit with the error's own
code; `BERTC_DEBUG=1` shows the traceback.
"""

from __future__ import annotations

from bertc.compiler.cli.app import app, main

__all__ = ["app", "main"]
