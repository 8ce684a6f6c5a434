"""The distribution maps kernels/ and datasets/ into the ssmts namespace, editable and as a wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_maps_namespaces():
    import ssmts.datasets
    import ssmts.kernels

    assert Path(ssmts.kernels.__file__).resolve().parent == ROOT / "kernels"
    assert Path(ssmts.datasets.__file__).resolve().parent == ROOT / "datasets"


def test_no_top_level_kernels_or_datasets_package():
    """The bare names belong to unrelated PyPI packages: we must not install them."""
    out = subprocess.run([sys.executable, "-c", "import kernels"], cwd="/", capture_output=True)
    assert out.returncode != 0


@pytest.mark.slow
def test_built_wheel_contains_and_imports_namespaces(tmp_path):
    pytest.importorskip("setuptools")
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(ROOT)], check=True)
    (whl,) = wheel_dir.glob("ssmts-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert "ssmts/kernels/__init__.py" in names and "ssmts/datasets/__init__.py" in names
    assert "ssmts/kernels/_s6_host.cpp" in names  # compiled from the installed package
    assert "ssmts/kernels/_cpu_scan.c" in names
    assert not any(n.startswith(("kernels/", "datasets/")) for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    code = ("import ssmts.kernels, ssmts.datasets, ssmts.ssm, torch\n"
            "from ssmts.kernels import cpu_scan\n"
            "a, b = torch.full((1, 4, 2), 0.5), torch.ones(1, 4, 2)\n"
            "assert cpu_scan.available(), cpu_scan.status()  # compiled from the wheel's source\n"
            "assert float(cpu_scan.linear_scan_cpu(a, b)[0, -1, 0]) == 1.875\n"
            "print(ssmts.kernels.__file__)")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert str(site) in out.stdout
