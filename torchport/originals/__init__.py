"""The originals, verbatim: baselines for benchmarks and references for tests. torchport never trains with them."""
