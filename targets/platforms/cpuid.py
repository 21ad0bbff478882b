"""Run inside the emulated aarch64 Python (QEMU_CPU set), once per core, at install:
`cpuid.py OUT CPUS [MIDR]` writes OUT/proc/cpuinfo and OUT/sys/.../midr_el1 for that core.

Why: QEMU 7.2's user mode shows the guest the host's x86 /proc/cpuinfo, on which the cpuinfo
library inside onnxruntime crashes at import, and OpenVINO's xbyak_aarch64 reads MIDR_EL1 from
sysfs. `qemu-aarch64-static -L PREFIX` looks every absolute path up under PREFIX first, so a core
is a prefix holding these files (and links to the Debian root). The features and MIDR_EL1 are
what the emulated CPU reports (HWCAPs, `mrs x0, midr_el1`, which Linux and QEMU emulate at EL0);
MIDR may be overridden to pose as another core of the same ISA (Cortex-A55, Cortex-A710).
Standard library only: nothing else is installed when this runs. Prints one JSON line.
"""

import ctypes
import json
import mmap
import os
import struct
import sys

AT_HWCAP, AT_HWCAP2 = 16, 26
PR_SVE_GET_VL = 51
# Linux's HWCAP bits, in /proc/cpuinfo's order (arch/arm64/include/uapi/asm/hwcap.h).
HWCAP = [
    "fp",
    "asimd",
    "evtstrm",
    "aes",
    "pmull",
    "sha1",
    "sha2",
    "crc32",
    "atomics",
    "fphp",
    "asimdhp",
    "cpuid",
    "asimdrdm",
    "jscvt",
    "fcma",
    "lrcpc",
    "dcpop",
    "sha3",
    "sm3",
    "sm4",
    "asimddp",
    "sha512",
    "sve",
    "asimdfhm",
    "dit",
    "uscat",
    "ilrcpc",
    "flagm",
    "ssbs",
    "sb",
    "paca",
    "pacg",
]
HWCAP2 = [
    "dcpodp",
    "sve2",
    "sveaes",
    "svepmull",
    "svebitperm",
    "svesha3",
    "svesm4",
    "flagm2",
    "frint",
    "svei8mm",
    "svef32mm",
    "svef64mm",
    "svebf16",
    "i8mm",
    "bf16",
    "dgh",
    "rng",
    "bti",
    "mte",
    "ecv",
    "afp",
    "rpres",
    "mte3",
    "sme",
    "sme_i16i64",
    "sme_f64f64",
    "sme_i8i32",
    "sme_f16f32",
    "sme_b16f32",
    "sme_f32f32",
    "sme_fa64",
    "wfxt",
    "ebf16",
    "sve_ebf16",
    "cssc",
    "rprfm",
    "sve2p1",
]
MRS_MIDR_RET = struct.pack("<II", 0xD5380000, 0xD65F03C0)  # mrs x0, midr_el1 ; ret


def features(libc: ctypes.CDLL) -> list[str]:
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    first, second = libc.getauxval(AT_HWCAP), libc.getauxval(AT_HWCAP2)
    return [name for bit, name in enumerate(HWCAP) if first >> bit & 1] + [
        name for bit, name in enumerate(HWCAP2) if second >> bit & 1
    ]


def read_midr() -> int:
    code = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(MRS_MIDR_RET)
    address = ctypes.addressof(ctypes.c_char.from_buffer(code))
    return int(ctypes.CFUNCTYPE(ctypes.c_uint64)(address)())


def cpuinfo(midr: int, names: list[str], cpus: int) -> str:
    implementer, variant = midr >> 24 & 0xFF, midr >> 20 & 0xF
    part, revision = midr >> 4 & 0xFFF, midr & 0xF
    block = (
        "processor\t: {index}\nBogoMIPS\t: 50.00\nFeatures\t: " + " ".join(names) + "\n"
        f"CPU implementer\t: {implementer:#04x}\nCPU architecture: 8\n"
        f"CPU variant\t: {variant:#x}\nCPU part\t: {part:#05x}\nCPU revision\t: {revision}\n\n"
    )
    return "".join(block.format(index=index) for index in range(cpus))


def main(argv: list[str]) -> int:
    out, cpus = argv[0], int(argv[1])
    libc = ctypes.CDLL(None)
    names = features(libc)
    midr = int(argv[2], 16) if len(argv) > 2 else read_midr()
    vector = libc.prctl(PR_SVE_GET_VL, 0, 0, 0, 0)
    os.makedirs(os.path.join(out, "proc"), exist_ok=True)
    with open(os.path.join(out, "proc", "cpuinfo"), "w") as file:
        file.write(cpuinfo(midr, names, cpus))
    for index in range(cpus):
        folder = os.path.join(out, f"sys/devices/system/cpu/cpu{index}/regs/identification")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "midr_el1"), "w") as file:
            file.write(f"{midr:#018x}\n")
        with open(os.path.join(folder, "revidr_el1"), "w") as file:
            file.write("0x0000000000000000\n")
    sve_bytes = vector & 0xFFFF if vector >= 0 else 0
    print(json.dumps({"midr": f"{midr:#x}", "features": names, "sve_vector_bytes": sve_bytes}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
