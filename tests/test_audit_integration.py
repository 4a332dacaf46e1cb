"""The audit inside runs: canaries reach site 0 only, the site's ``query.audit`` reply
holds scalars only, the central audit lands in metrics.jsonl, and ``medgan audit``."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from client.app import app
from medgan_core.audit import simulation_canaries
from medgan_core.models.state import gan_state
from medgan_core.run_dir import RunDirectory
from medgan_core.models import build_gan
from medgan_core.site import SiteConfig, training_records
from medgan_core.site.data import site_training_data
from server.central import AUDIT_QUERY, CentralAudit
from server.strategy import RunRecorder

ATTACK_KEYS = ("auc", "auc-ci-low", "auc-ci-high", "tpr-at-1pct-fpr", "tpr-at-01pct-fpr")


def _query(run, attacks: str) -> Message:
    content = RecordDict({"arrays": ArrayRecord(gan_state(build_gan(run))),
                          "config": ConfigRecord({"attacks": attacks})})
    return Message(content=content, dst_node_id=11, message_type=AUDIT_QUERY)


def _context(run, partition):
    return Context(run_id=1, node_id=11, node_config={"partition-id": partition, "num-partitions": 3},
                   state=RecordDict(), run_config=run.to_mapping())


def test_canaries_go_to_site_zero_only_with_their_inclusion_bits(small_run):
    run = replace(small_run, canaries=40)
    canaries = simulation_canaries(run)
    site0, site1 = SiteConfig.for_simulation(run, 0), SiteConfig.for_simulation(run, 1)
    assert site0.canaries and not site1.canaries

    data = site_training_data(site0, run)
    own = training_records(site0, run)
    added = data.samples[len(own.samples):].numpy()
    assert len(added) == canaries.included.sum() > 0
    np.testing.assert_allclose(added, canaries.records[canaries.included], atol=1e-6)
    assert len(site_training_data(site1, run).samples) == len(training_records(site1, run).samples)
    # Canaries are made from reference-patient beats, never from a member or non-member.
    assert run.holdout_records.split()[1] == "mitdb/116"


def test_audit_query_keeps_the_results_at_the_site(flower_identity, small_run):
    attacks = ("logan", "gan_leaks", "domias")
    reply = app(_query(small_run, " ".join(attacks)), _context(small_run, 1))

    assert not reply.has_error()
    # One MetricRecord saying the audit ran: the site has not opted into releasing it.
    assert set(reply.content.keys()) == {"metrics"}
    assert isinstance(reply.content["metrics"], MetricRecord)
    assert dict(reply.content["metrics"]) == {"audit-kept-at-site": 1.0}
    # The full audit is in the site's own directory, for its data-protection officer.
    site = SiteConfig.for_simulation(small_run, 1)
    (kept,) = (site.state_dir / "audits").glob("audit-*.json")
    metrics = json.loads(kept.read_text())["metrics"]
    assert set(metrics) == {f"{a}-{k}" for a in attacks for k in ATTACK_KEYS} | {"num-members", "num-non-members"}
    # Members: the site's training records (capped at 2000); non-members: patient mitdb/114.
    assert metrics["num-members"] == min(2000, len(training_records(site, small_run).labels))
    assert metrics["num-non-members"] == 1879
    assert all(0.0 <= metrics[f"{a}-auc"] <= 1.0 for a in attacks)
    assert not math.isnan(metrics["logan-tpr-at-01pct-fpr"])  # 1879 non-members reach 0.1% FPR


def test_audit_query_with_an_unknown_attack_gets_an_error_reply(flower_identity, small_run):
    reply = app(_query(small_run, "logan membership_oracle"), _context(small_run, 0))

    assert reply.has_error()
    assert reply.error.reason.startswith("medgan:config-refused: ")


def test_central_metrics_join_the_round_line_in_metrics_jsonl(tmp_path):
    run_dir = RunDirectory(tmp_path)
    recorder = RunRecorder(FedAvg(), run_dir, meta={})
    evaluate_fn = recorder.record_central(lambda rnd, arrays: MetricRecord({"site-0-logan-auc": 0.5 + rnd / 10}))
    arrays = ArrayRecord()

    evaluate_fn(0, arrays)  # Strategy.start's call before round 1 writes nothing
    assert run_dir.read_metrics() == []
    for rnd in (1, 2):
        recorder._round_record = {"round": rnd}
        recorder.aggregate_evaluate(rnd, [])
        assert len(run_dir.read_metrics()) == rnd - 1  # waits for the central metrics
        evaluate_fn(rnd, arrays)

    lines = run_dir.read_metrics()
    assert [line["round"] for line in lines] == [1, 2]
    assert [line["central"]["site-0-logan-auc"] for line in lines] == pytest.approx([0.6, 0.7])
    assert recorder.record_central(None) is None


def test_central_audit_reports_every_site_and_the_canaries(small_run):
    run = replace(small_run, audit_every=2, canaries=64, audit_attacks="logan gan_leaks")
    audit = CentralAudit(run=run, n_synthetic=300)
    arrays = ArrayRecord(gan_state(build_gan(run)))

    assert audit(1, arrays) is None  # only every audit-every rounds
    metrics = dict(audit(2, arrays))

    for scope in ("site-0", "site-1", "site-2", "site-0-canaries"):
        assert 0.0 <= metrics[f"{scope}-logan-auc"] <= 1.0
    assert metrics["site-0-canaries-num-members"] + metrics["site-0-canaries-num-non-members"] == 64
    # Untrained model, no ledger yet: no certified leakage, no violation.
    assert metrics["site-0-canaries-logan-epsilon-lb"] == 0.0 and metrics["violation"] == 0.0
    assert "site-0-logan-epsilon-lb" not in metrics  # sites' membership is not randomized


def test_medgan_audit_writes_json_figures_and_a_table(small_run, capsys):
    from simulations.audit import CANARY_FILE, write_canary_manifest
    from medgan_cli.main import main

    run = replace(small_run, canaries=32, audit_attacks="logan gan_leaks")
    directory = RunDirectory(run.run_dir)
    directory.write_json("config.json", run.to_mapping())
    directory.save_checkpoint(1, gan_state(build_gan(run)), meta={})
    write_canary_manifest(run)
    assert (directory.root / CANARY_FILE).exists()

    code = main(["audit", "--run-dir", run.run_dir, "--n-synthetic", "300"])

    assert code == 0
    report = json.loads((directory.root / "audit" / "audit.json").read_text())
    assert set(report["scopes"]) == {"site-0", "site-1", "site-2", "site-0-canaries"}
    assert report["split"]["non_member_patients"] == ["114"]
    assert report["split"]["reference_patients"] == ["116"]
    assert report["split"]["members"]["site-0"] == ["100", "106"]
    canary_logan = report["scopes"]["site-0-canaries"]["attacks"]["logan"]
    assert canary_logan["lower_bound"]["num_canaries"] == 32 and canary_logan["roc"]["fpr"][0] == 0.0
    assert all((directory.root / f).stat().st_size > 5_000 for f in report["figures"])
    table = capsys.readouterr().out
    assert "| site-0-canaries | logan |" in table and "n/a (not randomized)" in table


def test_medgan_audit_exits_nonzero_on_a_violation(monkeypatch, capsys, small_run):
    import simulations.audit
    from medgan_cli.main import main

    directory = RunDirectory(small_run.run_dir)  # a real run directory, so the CLI's checks pass
    directory.write_json("config.json", small_run.to_mapping())
    directory.save_checkpoint(1, gan_state(build_gan(small_run)), meta={})
    fake = {"scopes": {}, "figures": [], "violation": True}
    monkeypatch.setattr(simulations.audit, "audit_run", lambda *a, **k: fake)

    assert main(["audit", "--run-dir", small_run.run_dir]) == 3
    assert "VIOLATION" in capsys.readouterr().err
