"""The wheels a lent GPU machine lacks, downloaded here into .whl/ for a device call to carry.

The device machines (/work/.library/device) have no package registry and an image whose Python
(3.12) already holds torch, Lightning and the science stack but not MLflow, Optuna, Ray,
mnist1d or pydantic. This walks gradatlas's installed requirements (this venv's metadata: the
same versions the tests pass with), drops what the image lists, and downloads the rest as
CPython 3.12 manylinux wheels, so the session with a GPU spends its minutes on the GPU. A call
carries at most 64 MiB, and Ray's wheel alone is 75.6 MiB (2.60.0), so ``--skip`` leaves it
out by default: gradatlas imports Ray only to start workers, and every ``gpu_check.sh`` step
but the 4-workers-per-GPU one runs in one process (that one says it was skipped). Without Ray
the rest is 36 MiB (53 wheels, 2026-12-07).

    .venv/bin/python benchmarks/gpu_wheels.py                      # into .whl/
    .venv/bin/python benchmarks/gpu_wheels.py --dry-run            # only the list
then, on the device: ``run(command="bash benchmarks/gpu_check.sh", carry=[".whl"])``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

IMAGE_LIST = Path("/work/.library/device/KINDS.md")  # "Packages: a, b, c." as a session read it
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
CARRY_LIMIT = 64 * 2**20


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path) -> set[str]:
    """The package names the device image holds, from the library's list."""
    text = path.read_text()
    listed = text.split("Packages:", 1)[1].split(".\n", 1)[0]
    return {norm(n.strip()) for n in listed.split(",") if n.strip()}


def closure(root: str = "gradatlas") -> dict[str, str]:
    """Every installed distribution ``root`` needs (no extras), name -> installed version."""
    seen: dict[str, str] = {}
    todo = [root]
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    seen.pop(norm(root), None)
    return seen


def download(name: str, version: str, dest: Path) -> bool:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    return subprocess.run([*cmd, f"{name}=={version}"]).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(".whl"))
    parser.add_argument("--image-list", type=Path, default=IMAGE_LIST)
    parser.add_argument("--skip", nargs="*", default=["ray"], help="names to leave out")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    have = image_packages(args.image_list)
    skip = {norm(n) for n in args.skip}
    missing = {n: v for n, v in sorted(closure().items()) if n not in have and n not in skip}
    print(
        f"{len(missing)} packages the image lacks: "
        + " ".join(f"{n}=={v}" for n, v in missing.items())
    )
    if args.dry_run:
        return 0
    args.dest.mkdir(exist_ok=True)
    failed = [n for n, v in missing.items() if not download(n, v, args.dest)]
    wheels = sorted(args.dest.glob("*.whl"), key=lambda p: p.stat().st_size, reverse=True)
    total = sum(p.stat().st_size for p in wheels)
    print(f"{len(wheels)} wheels in {args.dest}, {total / 2**20:.1f} MiB (a call carries 64 MiB)")
    for p in wheels[:5]:
        print(f"  {p.stat().st_size / 2**20:6.1f} MiB  {p.name}")
    if failed:
        print("no CPython 3.12 manylinux wheel for: " + ", ".join(failed))
    if total > CARRY_LIMIT:
        print("over the carry limit: leave the largest out with --skip (and rm it from .whl)")
    return 1 if failed or total > CARRY_LIMIT else 0


if __name__ == "__main__":
    sys.exit(main())
