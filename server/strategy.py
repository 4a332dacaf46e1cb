"""A Strategy wrapper that records each round into the run directory.

It delegates every decision to the inner strategy (FedAvg by default) and only adds the
side effects a run needs: per-site metrics (each site's epsilon), refusals, checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from medgan_core.run_dir import RunDirectory

logger = logging.getLogger(__name__)


class RunRecorder(Strategy):
    def __init__(self, inner: Strategy, run_dir: RunDirectory, meta: dict) -> None:
        self.inner = inner
        self.run_dir = run_dir
        self.meta = meta
        self._round_record: dict = {}

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._round_record = {"round": server_round, "started": time.time()}
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self._round_record["sites"] = _per_site(replies)
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        self._round_record["train"] = dict(metrics) if metrics is not None else None
        if arrays is not None:
            self.run_dir.save_checkpoint(server_round, arrays.to_torch_state_dict(), self.meta)
        else:
            logger.warning("round %d: no site returned an update; the global model is unchanged", server_round)
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = list(replies)
        metrics = self.inner.aggregate_evaluate(server_round, replies)
        record = {**self._round_record, "evaluate": dict(metrics) if metrics is not None else None,
                  "evaluate_sites": _per_site(replies), "finished": time.time()}
        self.run_dir.append_metrics(record)
        return metrics


def _per_site(replies: list[Message]) -> dict[str, dict]:
    sites: dict[str, dict] = {}
    for msg in replies:
        node = str(msg.metadata.src_node_id)
        if msg.has_error():
            sites[node] = {"error": msg.error.reason}
        else:
            sites[node] = dict(next(iter(msg.content.metric_records.values())))
    return sites
