"""SSMForecaster under the long-horizon protocol: now ``ssmts bench ltsf`` (ssmts.bench.ltsf).

Kept for existing command lines; every flag of the old script is accepted, e.g.
    python benchmarks/bench_ltsf.py --sets ETTh1 --horizons 96 --lrs 1e-3 --out /tmp/x
"""
import sys

from ssmts.bench.ltsf import main

if __name__ == "__main__":
    sys.exit(main(prog="python benchmarks/bench_ltsf.py"))
