"""An app that checks its artifact once, at first start, before it serves anything.

The check recomputes the golden outputs bertc recorded at compile time (`golden.json`) on this
device's runtime and CPU and compares them with the build machine's (the vendorable loader's
`check`). The verdict is cached beside the app (`bertc-check.json` in the working directory),
keyed by the artifact's manifest digest, the runtime's version and the CPU, so the next start
reads it; an app whose artifact is not reproduced here refuses to serve (exit 12).

    python examples/check_on_device.py ARTIFACT "first text" ["second text, for a pair task"]
"""

import json
import sys
from pathlib import Path

try:
    import bertc_runtime
except ImportError:
    from bertc.targets import loader as bertc_runtime

VERDICT_FILE = Path("bertc-check.json")


def verdict_key(artifact: Path) -> dict:
    """What the verdict holds for: this artifact on this runtime build and this CPU."""
    manifest = bertc_runtime.read_manifest(artifact)
    return {
        "artifact": str(artifact.resolve()),
        "manifest_sha256": manifest["manifest_sha256"],
        **bertc_runtime.platform_description(manifest),
    }


def cached_verdict() -> dict:
    """The verdict cached by an earlier start, or {} when there is none or it cannot be read (a
    damaged cache means: check again)."""
    try:
        cached = json.loads(VERDICT_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def checked_verdict(artifact: Path) -> dict:
    """The cached verdict for this key, or a fresh check (cached for the next start)."""
    key = verdict_key(artifact)
    cached = cached_verdict()
    if cached.get("key") == key:
        return cached
    report = bertc_runtime.check(artifact, threads=2)
    for line in report.lines():
        print(line, file=sys.stderr)
    verdict = {"key": key, "passed": report.passed, "problems": list(report.problems)}
    try:
        VERDICT_FILE.write_text(json.dumps(verdict, indent=1) + "\n", encoding="utf-8")
    except OSError as error:  # a read-only folder: check again at the next start
        print(f"warning: the verdict was not cached: {error}", file=sys.stderr)
    return verdict


if len(sys.argv) not in (3, 4):
    print(
        'usage: python check_on_device.py ARTIFACT "first text" ["second text, for a pair task"]',
        file=sys.stderr,
    )
    sys.exit(2)
artifact = Path(sys.argv[1])
try:
    verdict = checked_verdict(artifact)
except bertc_runtime.ArtifactLoadError as error:  # no golden outputs, or an edited file
    print(f"refusing to serve: {error}", file=sys.stderr)
    sys.exit(11)
if not verdict["passed"]:
    print(f"refusing to serve: {verdict['problems'][0]}", file=sys.stderr)
    sys.exit(12)
model = bertc_runtime.load(artifact, threads=2)
pairs = [sys.argv[3]] if len(sys.argv) > 3 else None
for prediction in model.predict([sys.argv[2]], pairs):
    print(prediction.label, f"{max(prediction.scores):.3f}")
