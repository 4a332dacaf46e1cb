"""``medgan status``: rounds, each site's epsilon per record, refusals, last metrics."""

import json

from medgan_core.models.state import gan_state
from medgan_core.run_dir import RunDirectory
from medgan_core.models import build_gan
from medgan_core.site import SiteConfig, train_round
from medgan_cli.main import main


def test_status_reads_the_run_while_it_goes(small_run, capsys):
    directory = RunDirectory(small_run.run_dir)
    directory.write_json("config.json", small_run.to_mapping())
    state = {k: v.numpy() for k, v in gan_state(build_gan(small_run)).items()}
    state, metrics = train_round(site=SiteConfig.for_simulation(small_run, 0), run=small_run, run_id="r",
                                 server_round=1, weights=state)
    directory.save_checkpoint(1, state, meta={})
    directory.append_metrics({"round": 1, "trained": 1, "train": metrics,
                              "refusals": {"5": "medgan:budget-exhausted: the site's privacy budget does not allow this request"}})

    assert main(["status", "--run-dir", small_run.run_dir]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 rounds recorded, last checkpoint round-001.pt, DP on, report not written yet" in out
    ledger = json.loads(SiteConfig.for_simulation(small_run, 0).ledger_path.read_text())
    assert f"site-0: epsilon {metrics['epsilon']:.3f} of 10 per beat (one record)" in out and len(ledger["entries"]) == 2
    assert "refusals: 1 (medgan:budget-exhausted x1); round 1: 1 refused, 1 trained" in out
    assert "last round 1: 1 site(s) trained" in out
