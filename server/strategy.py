"""A Strategy wrapper that records each round into the run directory.

It delegates every decision to the inner strategy (FedAvg by default) and only adds the
side effects a run needs: per-site metrics (each site's epsilon), refusals, checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

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
        # With a ServerApp evaluate_fn, Strategy.start calls it after aggregate_evaluate:
        # the round's line then waits here and is written, with the central metrics, by
        # the wrapper from record_central().
        self._defer_line = False
        self._pending_line: dict | None = None

    def record_central(self, evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None
                       ) -> Callable[[int, ArrayRecord], MetricRecord | None] | None:
        """Wrap a ServerApp ``evaluate_fn`` so its metrics land in the round's metrics.jsonl
        line under ``"central"`` (``None`` in, ``None`` out). The line is written even if
        ``evaluate_fn`` raises."""
        if evaluate_fn is None:
            return None
        self._defer_line = True

        def evaluate_and_record(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            metrics = None
            try:
                metrics = evaluate_fn(server_round, arrays)
            finally:
                line, self._pending_line = self._pending_line, None
                if line is not None:  # None before round 1 (Strategy.start's initial call)
                    self.run_dir.append_metrics({**line, "central": dict(metrics) if metrics is not None else None})
            return metrics

        return evaluate_and_record

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
        # Refusals are results, not noise in a log: counted per round (by their fixed code)
        # so the report, `medgan simulate`'s exit status and the coordinator's summary see them.
        refusals = {node: site["error"] for node, site in self._round_record["sites"].items() if "error" in site}
        self._round_record["refusals"] = refusals
        self._round_record["trained"] = len(replies) - len(refusals)
        for node, site in self._round_record["sites"].items():
            if "error" in site:
                logger.warning("round %d: node %s refused: %s", server_round, node, site["error"])
            else:
                logger.info("round %d: node %s spent epsilon %.3f so far, %d examples", server_round, node,
                            site.get("epsilon", float("nan")), site.get("num-examples", 0))
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
        if self._defer_line:
            self._pending_line = record
        else:
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
