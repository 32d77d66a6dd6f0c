"""DESIGN.md's dependency rule, as import-linter contracts in pyproject.toml: layers, the
forbidden imports and no cycles. A violation prints the import chain that breaks it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_import_contract_is_kept() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    assert {contract["type"] for contract in contracts} >= {
        "layers",
        "forbidden",
        "acyclic_siblings",
    }
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert f"Contracts: {len(contracts)} kept, 0 broken." in report, report
