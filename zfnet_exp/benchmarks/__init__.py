"""Reproducible timing scripts (``python -m zfnet_exp.benchmarks.<name>``): each compares our implementation
with the reference library it replaces on the same units, same machine, one run, and checks the results agree."""
