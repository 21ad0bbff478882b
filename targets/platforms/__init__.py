"""Other machines' builds of the runtimes, run on this one: today ARM64 (aarch64) under QEMU
user-mode emulation (`arm64`). An artifact built on x86 ships to ARM phones and boards, and INT8
results drift across instruction sets: `bertc verify --platform arm64` measures by how much.

    arm64    installer, emulated cores and the launcher (`qemu-aarch64-static -L PREFIX`)
    worker   what runs inside the emulated Python: numpy, one runtime and `targets/loader.py`
    cpuid    run inside once per core at install: that core's /proc/cpuinfo and MIDR_EL1 files
"""
