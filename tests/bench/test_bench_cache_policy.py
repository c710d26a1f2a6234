"""Smoke test of ``python -m bench.cache_policy --quick``: both policies, the ideal and the shift windows."""

import json


def test_bench_cache_policy_writes_a_complete_report(tmp_path):
    from bench import cache_policy

    report = cache_policy.main(["--quick", "--alphas", "1.1", "--percentages", "0.1", "--out", str(tmp_path)])
    assert [p["policy"] for p in report["points"]] == ["lru", "tinylfu"]
    for p in report["points"]:
        assert 0 < p["hit_rate_distinct"] <= 1 and 0 < p["ideal_distinct"] <= 1 and p["capacity"] == 9984
        assert len(p["shift"]) == len(p["shift_windows"]) == 2
    (json_file,) = tmp_path.glob("cache_policy_*.json")
    assert json.loads(json_file.read_text())["rows"] == 100_000
    md = json_file.with_suffix(".md").read_text()
    assert "| 1.1 | 10% | tinylfu |" in md and "## Traffic shift" in md
