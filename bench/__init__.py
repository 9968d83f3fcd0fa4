"""Benchmarks: ``python -m bench`` (``make bench``). Ratios are against baselines measured in
the same run, so they hold on a noisy machine where absolute times do not."""
