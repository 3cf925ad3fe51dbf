"""Benchmarks of ryu_lag against the classic Ryu lacplib and Open vSwitch's own bond.

Each module exposes ``run(quick: bool = False) -> common.Result`` and ``main()``;
``python -m benchmarks.run_all`` runs them all and rewrites BENCHMARKS.md.
"""
