"""avq build --weight / --int8-aware (issue 19): each form is accepted and
shown by avq info, bad forms and meaningless combinations are refused with
a message, and the search results of a weighted index are valid."""

import pytest


def build(run_avq, tiny, out, *extra, metric="ip"):
    return run_avq("build", "--base", tiny.base_fvecs, "--metric", metric, "--out", out,
                   "--brute-force-below", "100", "--threads", "2", *extra)


@pytest.mark.parametrize("weight,shown", [("pow:3", "weight pow:3"), ("exp:2.5", "weight exp:2.5"),
                                          ("logistic:0.05", "weight logistic:0.05 at T 0.2")])
def test_weight_accepted_and_shown(run_avq, tiny, tmp_path, weight, shown):
    out = str(tmp_path / "w.avq")
    r = build(run_avq, tiny, out, "--weight", weight)
    assert r.returncode == 0, r.stderr
    info = run_avq("info", out)
    assert info.returncode == 0 and shown in info.stdout, info.stdout
    s = run_avq("search", "--index", out, "--query", tiny.query_fvecs, "--k", "5",
                "--out", str(tmp_path / "ids.ivecs"))
    assert s.returncode == 0, s.stderr


def test_step_is_the_default(run_avq, tiny, tmp_path):
    out = str(tmp_path / "s.avq")
    assert build(run_avq, tiny, out, "--weight", "step").returncode == 0
    assert "weight" not in run_avq("info", out).stdout


def test_int8_aware(run_avq, tiny, tmp_path):
    out = str(tmp_path / "i.avq")
    r = build(run_avq, tiny, out, "--reorder", "int8", "--int8-aware", metric="cos")
    assert r.returncode == 0, r.stderr
    r = build(run_avq, tiny, out, "--int8-aware")
    assert r.returncode != 0 and "--reorder int8" in r.stderr


@pytest.mark.parametrize("extra,message", [
    (["--weight", "pow"], "--weight must be"),
    (["--weight", "step:1"], "--weight must be"),
    (["--weight", "cubic:2"], "--weight must be"),
    (["--weight", "exp:-1"], "--weight must be"),
    (["--weight", "logistic:0"], "--weight must be"),
    (["--weight", "pow:2", "--eta", "3"], "exclude each other"),
    (["--weight", "logistic:0.1", "--threshold", "none"], "needs a threshold"),
])
def test_bad_weight_refused(run_avq, tiny, tmp_path, extra, message):
    out = tmp_path / "bad.avq"
    r = build(run_avq, tiny, str(out), *extra)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert not out.exists()


def test_l2_refuses_weight(run_avq, tiny, tmp_path):
    for extra in (["--weight", "pow:2"], ["--reorder", "int8", "--int8-aware"]):
        r = build(run_avq, tiny, str(tmp_path / "l2.avq"), *extra, metric="l2")
        assert r.returncode != 0 and "applies to ip and cos" in r.stderr, r.stderr
