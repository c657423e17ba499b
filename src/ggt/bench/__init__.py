"""Generator benchmark: which generator (and prompting mode) makes the best ground truth."""

from ggt.bench.generators import BenchSummary, ContestantResult, MetricStat, bench_generators, prefer

__all__ = ["BenchSummary", "ContestantResult", "MetricStat", "bench_generators", "prefer"]
