"""Flower ServerApp: builds the global GAN, runs FedAvg over G and D, records the run."""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from medgan_core.config import RunConfig
from medgan_core.models.state import gan_state, load_gan_state
from medgan_core.run_dir import RunDirectory
from medgan_core.models import initial_gan
from server.central import central_audit_fn, query_site_audits
from server.resume import RoundOffset, resume_point
from server.strategy import RunRecorder

logger = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    # Opacus calls logging.basicConfig at import, so the root logger has a handler; Flower's
    # "flwr" logger has its own, and propagating would print every Flower line twice.
    logging.getLogger("flwr").propagate = False
    run = RunConfig.from_mapping(context.run_config)
    run_dir = RunDirectory(run.run_dir)
    run_dir.write_json("config.json", run.to_mapping())
    gan = initial_gan(run)
    if run.pretrained:
        # Which public data round 1's weights come from, and under which licence.
        from medgan_core.pretrained_weights import read_provenance

        run_dir.write_json("public_pretraining.json", {"pretrained": run.pretrained, **read_provenance(run)})
    meta = {"model": run.model, "modality": run.modality, "latent-dim": run.latent_dim,
            "image-size": run.image_size}
    resumed_state, done = resume_point(run, meta)  # (None, 0) unless resume-from is set
    if done:
        load_gan_state(gan, resumed_state)  # a changed model fails here, not at every site
    strategy = RunRecorder(
        FedAvg(fraction_train=run.fraction_train, fraction_evaluate=run.fraction_evaluate,
               min_train_nodes=run.min_nodes, min_evaluate_nodes=run.min_nodes,
               min_available_nodes=run.min_nodes),
        run_dir, meta,
    )
    evaluate_fn = strategy.record_central(central_audit_fn(run))  # None unless audit-every > 0
    if done:
        strategy = RoundOffset(strategy, done)
        evaluate_fn = strategy.shift(evaluate_fn)
    result = strategy.start(
        grid=grid, initial_arrays=ArrayRecord(gan_state(gan)), num_rounds=run.num_server_rounds - done,
        train_config=ConfigRecord({"dp-enabled": run.dp_enabled}), evaluate_fn=evaluate_fn,
    )
    if run.audit_every > 0 and len(result.arrays):
        # Federated audit of the final model: each site attacks it on its own data.
        replies = query_site_audits(grid, result.arrays, attacks=run.audit_attacks.split())
        run_dir.write_json("audit/federated.json", replies)
    logger.info("run finished; artifacts in %s", run_dir.root)
