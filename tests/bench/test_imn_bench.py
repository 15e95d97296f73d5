from modnets.bench import get_benchmark


def test_imn_bench_quick_reports_both_ratios_and_full_argmin_agreement():
    result = get_benchmark("imn").run(quick=True)
    assert result["bench"] == "imn" and result["ratio"] == result["results"]["ratio_exact"]
    assert result["results"]["ratio_fast"] > 0
    assert result["results"]["argmin_agreement_exact"] == 1.0
    assert result["results"]["argmin_agreement_fast"] == 1.0
    assert result["config"]["candidates"] == (2**result["config"]["m"] - 1) * result["config"]["n"]
