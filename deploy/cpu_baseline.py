#!/usr/bin/env python3
"""Does native code run on any x86-64 CPU? Find out by disassembly.

    deploy/cpu_baseline.py FILE...                  exit 1 and name the functions if not
    deploy/cpu_baseline.py --missing-flags FILE...  the CPU flags they need that this CPU lacks

A library built with `-march=native` on a machine with AVX-512 uses AVX-512
everywhere, and on a CPU without it the first call dies with SIGILL
(signal 4). Tests on the build machine cannot show that, so this reads the
machine code instead: `objdump -d` every function, and report each one that
uses an instruction above the x86-64 baseline (x86-64-v1: SSE2 and below)
unless the function is one its program dispatches to at run time, after
asking the CPU.

Runtime-dispatched functions are recognised by name, the convention of every
library we ship (Postgres, pgvector, ONNX Runtime): a function compiled for
an instruction set carries that set's name (`pg_popcount_avx512`,
`BitHammingDistanceAvx512Popcount`, `HalfvecL2SquaredDistanceF16c`,
`MlasGemmFloatKernelAvx512F`), and GCC's `target_clones` variants end in the
target (`VectorL2SquaredDistance.fma`). A function without such a name that
uses AVX is exactly what `-march=native` produces, and it fails the check.

Above the baseline counts: any VEX/EVEX instruction (AVX, AVX2, FMA, F16C,
AVX-512, and the `ymm`/`zmm`/mask registers), SSE3, SSSE3, SSE4.1, SSE4.2,
POPCNT, LZCNT, BMI1/BMI2, MOVBE, ADX, AES-NI, PCLMULQDQ, SHA and CMPXCHG16B.
Two exceptions, both safe on every x86-64 CPU: `tzcnt`, which compilers emit
as `rep bsf` for a count they know is of a non-zero value (a CPU without BMI1
runs it as `bsf`, same result), and `xgetbv`, which code executes only after
CPUID says the OS supports it (it is how a dispatcher asks about AVX state).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Mnemonics (as objdump prints them in AT&T syntax, without operand-size
# suffixes where it adds them) by the extension that introduced them.
_EXTENSIONS: dict[str, set[str]] = {
    "SSE3": {"addsubpd", "addsubps", "haddpd", "haddps", "hsubpd", "hsubps", "lddqu", "movddup",
             "movshdup", "movsldup", "fisttp", "fisttps", "fisttpl", "fisttpll", "monitor", "mwait"},
    "SSSE3": {"pabsb", "pabsw", "pabsd", "palignr", "phaddw", "phaddd", "phaddsw", "phsubw", "phsubd",
              "phsubsw", "pmaddubsw", "pmulhrsw", "pshufb", "psignb", "psignw", "psignd"},
    "SSE4.1": {"blendpd", "blendps", "blendvpd", "blendvps", "dppd", "dpps", "extractps", "insertps",
               "movntdqa", "mpsadbw", "packusdw", "pblendvb", "pblendw", "pcmpeqq", "pextrb", "pextrd",
               "pextrq", "phminposuw", "pinsrb", "pinsrd", "pinsrq", "pmaxsb", "pmaxsd", "pmaxud",
               "pmaxuw", "pminsb", "pminsd", "pminud", "pminuw", "pmovsxbw", "pmovsxbd", "pmovsxbq",
               "pmovsxwd", "pmovsxwq", "pmovsxdq", "pmovzxbw", "pmovzxbd", "pmovzxbq", "pmovzxwd",
               "pmovzxwq", "pmovzxdq", "pmuldq", "pmulld", "ptest", "roundpd", "roundps", "roundsd",
               "roundss"},
    "SSE4.2": {"crc32", "crc32b", "crc32w", "crc32l", "crc32q", "pcmpestri", "pcmpestrm", "pcmpistri",
               "pcmpistrm", "pcmpgtq"},
    "POPCNT": {"popcnt", "popcntw", "popcntl", "popcntq"},
    "LZCNT": {"lzcnt", "lzcntw", "lzcntl", "lzcntq"},
    "BMI1": {"andn", "andnl", "andnq", "bextr", "bextrl", "bextrq", "blsi", "blsil", "blsiq", "blsmsk",
             "blsmskl", "blsmskq", "blsr", "blsrl", "blsrq"},
    "BMI2": {"bzhi", "bzhil", "bzhiq", "mulx", "mulxl", "mulxq", "pdep", "pdepl", "pdepq", "pext", "pextl",
             "pextq", "rorx", "rorxl", "rorxq", "sarx", "sarxl", "sarxq", "shlx", "shlxl", "shlxq", "shrx",
             "shrxl", "shrxq"},
    "MOVBE": {"movbe", "movbew", "movbel", "movbeq"},
    "ADX": {"adcx", "adcxl", "adcxq", "adox", "adoxl", "adoxq"},
    "AES": {"aesenc", "aesenclast", "aesdec", "aesdeclast", "aesimc", "aeskeygenassist"},
    "PCLMULQDQ": {"pclmulqdq", "pclmullqlqdq", "pclmulhqlqdq", "pclmullqhqdq", "pclmulhqhqdq"},
    "SHA": {"sha1rnds4", "sha1nexte", "sha1msg1", "sha1msg2", "sha256rnds2", "sha256msg1", "sha256msg2"},
    "CMPXCHG16B": {"cmpxchg16b"},
}
_EXTENSION_OF = {m: ext for ext, ms in _EXTENSIONS.items() for m in ms}
# `verr`/`verw` start with a v and are as old as the 286.
_NOT_VEX = {"verr", "verw"}
_PREFIXES = {"rep", "repz", "repe", "repnz", "repne", "lock", "notrack", "bnd", "data16", "addr32",
             "cs", "ds", "es", "fs", "gs", "ss", "{vex}", "{vex3}", "{evex}"}
_WIDE_REGISTER = re.compile(r"%(ymm|zmm)\d+")
_MASK_REGISTER = re.compile(r"%k[0-7]\b")

# Names that say "compiled for this instruction set; called only after the
# CPU was asked". Matched case-insensitively against the whole symbol.
_DISPATCHED = re.compile(
    r"""
    \.(default|resolver)$                                   # target_clones plumbing
    | \.(arch_x86_64_v[234]|avx\w*|fma\w*|f16c|popcnt|sse\w*|bmi\w*)(\.\d+)?$   # target_clones variants
    | avx512 | avx2 | avx(?![a-z]) | avxvnni | fma3? (?![a-z]) | f16c | sse4_?[12] | sse42 | ssse3
    | popcnt(?!_available) | amx | vnni | bmi2?
    | ^pg_popcount\w*_fast$                                  # Postgres: chosen by pg_popcount_available()
    """,
    re.IGNORECASE | re.VERBOSE,
)


@dataclass
class Finding:
    function: str
    extensions: set[str] = field(default_factory=set)
    example: str = ""


# 256-bit integer and cross-lane operations came with AVX2, not AVX.
_AVX2_ONLY = re.compile(r"^v(pbroadcast|perm2i128|inserti128|extracti128|pgather|gather|pmaskmov|psllv|psrlv|psrav|permq|permd|pblendd)")
# Per extension, the flag /proc/cpuinfo shows when the CPU has it.
CPUINFO_FLAG = {
    "SSE3": "pni", "SSSE3": "ssse3", "SSE4.1": "sse4_1", "SSE4.2": "sse4_2", "POPCNT": "popcnt",
    "LZCNT": "abm", "BMI1": "bmi1", "BMI2": "bmi2", "MOVBE": "movbe", "ADX": "adx", "AES": "aes",
    "PCLMULQDQ": "pclmulqdq", "SHA": "sha_ni", "CMPXCHG16B": "cx16", "AVX": "avx", "AVX2": "avx2",
    "FMA": "fma", "F16C": "f16c", "AVX-512": "avx512f",
}


def extension_of(mnemonic: str, operands: str) -> str | None:
    """The extension above x86-64-v1 an instruction needs, or None."""
    if "%zmm" in operands or _MASK_REGISTER.search(operands):
        return "AVX-512"
    if mnemonic.startswith("v") and mnemonic not in _NOT_VEX:
        if mnemonic.startswith(("vfmadd", "vfmsub", "vfnmadd", "vfnmsub")):
            return "FMA"
        if mnemonic.startswith(("vcvtph2ps", "vcvtps2ph")):
            return "F16C"
        if _AVX2_ONLY.match(mnemonic) or ("%ymm" in operands and mnemonic.startswith("vp")
                                          and not mnemonic.startswith(("vpermil", "vptest"))):
            return "AVX2"
        return "AVX"
    if _WIDE_REGISTER.search(operands):
        return "AVX"
    return _EXTENSION_OF.get(mnemonic)


def _instructions(path: Path):
    """(function, mnemonic, operands, text) for every instruction in FILE."""
    proc = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-M", "att", str(path)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"objdump failed on {path}: {proc.stderr.strip()}")
    function = "?"
    for line in proc.stdout.splitlines():
        if line.endswith(">:"):
            function = line[line.index("<") + 1:-2]
            continue
        # "  4011e0:\tvmovdqu64 (%rsi),%zmm0"
        parts = line.split("\t", 1)
        if len(parts) != 2 or not parts[0].rstrip().endswith(":"):
            continue
        words = parts[1].split()
        while words and words[0] in _PREFIXES:
            words = words[1:]
        if not words:
            continue
        yield function, words[0], " ".join(words[1:]), parts[1].strip()


def scan(path: Path) -> list[Finding]:
    """The functions of FILE that need more than x86-64-v1 and are not
    runtime-dispatched, with what they need."""
    findings: dict[str, Finding] = {}
    for function, mnemonic, operands, text in _instructions(path):
        extension = extension_of(mnemonic, operands)
        if extension is None or _DISPATCHED.search(function):
            continue
        finding = findings.setdefault(function, Finding(function, example=text))
        finding.extensions.add(extension)
    # The widest first: an AVX-512 function is the one that crashes most CPUs.
    return sorted(findings.values(), key=lambda f: ("AVX-512" not in f.extensions, f.function))


def missing_flags(paths: list[Path], cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The /proc/cpuinfo flags the files' non-dispatched code needs and this
    CPU lacks: what to tell someone whose Postgres just died of SIGILL."""
    have: set[str] = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            break
    needed = {CPUINFO_FLAG[e] for path in paths for f in scan(path) for e in f.extensions}
    return sorted(needed - have)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--missing-flags"]:
        print(" ".join(missing_flags([Path(a) for a in argv[1:]])))
        return 0
    if not argv:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    bad = 0
    for name in argv:
        path = Path(name)
        findings = scan(path)
        if not findings:
            print(f"  ok    {path}: runs on any x86-64 CPU")
            continue
        bad += 1
        print(f"  FAIL  {path}: {len(findings)} function(s) need more than x86-64 outside runtime dispatch")
        for finding in findings[:20]:
            print(f"          {finding.function}: {', '.join(sorted(finding.extensions))} (e.g. `{finding.example}`)")
        if len(findings) > 20:
            print(f"          ... and {len(findings) - 20} more")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
