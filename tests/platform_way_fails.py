"""A fake emulated run (tests/platform_helpers.py) in which every way's runtime fails, as
OpenVINO 2026.4's aarch64 plugin fails to compile the tiny static-shape IRs
(ConvertFullyConnectedBias throws): `platform_way_fails.py REQUEST.json`."""

import json
import sys
from pathlib import Path

import numpy as np

request = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
results = {}
for way in request["ways"]:
    results[f"error:{way}"] = np.asarray([f"{way}: cannot load: ConvertFullyConnectedBias threw"])
    results[f"seconds:{way}"] = np.asarray([1.0])
np.savez(request["out"], **results)
