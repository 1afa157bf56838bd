"""Latency percentiles estimated from the bucket histogram."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from arenahub.platform.records import latency_column
from arenahub.platform.storage import schema
from arenahub.platform.storage.analytics import percentile
from tests.platform.analytics.records_data import bucket, exact


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=200_000, allow_nan=False), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.95, 0.99]))
def test_percentiles_from_the_histogram_are_within_one_bucket(values: list[float], q: float) -> None:
    histogram = [0] * len(schema.LATENCY_COLUMNS)
    for value in values:
        histogram[bucket(value)] += 1
    estimate = percentile(histogram, q)
    assert estimate is not None
    assert abs(bucket(estimate) - bucket(exact(values, q))) <= 1


def test_percentile_edges() -> None:
    assert percentile([0] * len(schema.LATENCY_COLUMNS), 0.5) is None
    only_slow = [0] * len(schema.LATENCY_COLUMNS)
    only_slow[-1] = 3
    assert percentile(only_slow, 0.5) == schema.LATENCY_BUCKETS_MS[-1]
    assert latency_column(10) == "lat_10" and latency_column(10.001) == "lat_25" and latency_column(0) == "lat_10"
