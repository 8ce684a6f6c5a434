"""Benchmarks shipped with the package: ``ssmts bench ltsf`` (``ssmts.bench.ltsf``).

``ltsf`` runs the command, ``jobs`` the job list, the worker and the process pool,
``report`` the selection on validation and the JSON / markdown report, ``peers`` the
optional neuralforecast peers (``pip install "ssmts[bench]"``).
"""
