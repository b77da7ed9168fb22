"""The ``privcity`` command.

    privcity info [--json]     version, CPU features and the implementation of each primitive
"""
from __future__ import annotations

import argparse
import json
import platform
import sys

from . import __version__, aes_implementations, backend_info, cpu_features


def _info(args: argparse.Namespace) -> int:
    report = {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_features": cpu_features(),
        "backends": backend_info(),
        "aes256gcm_available": aes_implementations(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"privcity {report['version']} (Python {report['python']}, {report['machine']})")
    feats = report["cpu_features"]
    print("CPU features: " + " ".join(f"{k}{'+' if v else '-'}" for k, v in feats.items()))
    print("Backends:")
    for prim, impl in report["backends"].items():
        print(f"  {prim:<10} {impl}")
    print("AES-256-GCM implementations available: " + ", ".join(report["aes256gcm_available"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="privcity", description="privcity: privacy for smart-city IoT")
    parser.add_argument("--version", action="version", version=f"privcity {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_info = sub.add_parser("info", help="version, CPU features and backends")
    p_info.add_argument("--json", action="store_true", help="print a JSON object")
    p_info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["info"] + (argv or []))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
