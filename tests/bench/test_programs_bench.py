from modnets.bench import BENCHMARKS, get_benchmark


def test_programs_bench_quick_runs_sampled_programs_both_ways():
    assert "programs" in BENCHMARKS
    result = get_benchmark("programs").run(quick=True)
    config, results = result["config"], result["results"]
    assert result["bench"] == "programs"
    assert config["programs"] == config["questions"] * config["samples_per_question"]
    assert 1 < config["distinct_programs"] <= config["programs"]
    assert config["batched_module_invocations"] < config["calls"]  # identical calls grouped
    assert results["batched_seconds"] > 0 and results["one_at_a_time_seconds"] > 0
    assert result["ratio"] == results["one_at_a_time_seconds"] / results["batched_seconds"]
