"""One federation in one process: the ClientApp's site code and Flower's FedAvg arithmetic.

Every round each site trains from the global weights through
:func:`medgan_core.site.train_round`, exactly as the Flower ClientApp calls it (its ledger,
its charged size release and its DP class prior included), and the replies are averaged
with the function Flower 1.42's ``FedAvg.aggregate_train`` calls,
``flwr.serverapp.strategy.strategy_utils.aggregate_arrayrecords``, weighted by
``num-examples``, on the same records a ClientApp reply carries. The initial global model
is the ServerApp's (``server/app.py``): :func:`medgan_core.models.initial_gan`:
:func:`~medgan_core.models.build_gan` right after
``torch.manual_seed(run.seed)``.

So a run here gives the global weights a simulation with Flower's engine gives, without
Ray or a SuperLink: bit for bit with two sites (or one), and with more sites up to the order
of the floating-point sum, which Flower itself does not fix (it samples nodes in random
order and aggregates replies in arrival order). The study (``simulations/study.py``), the
X-ray sweep (``benchmarks/xray_dp_sweep.py``) and the tests run their federations here.

What this does not do: refusals are raised, not turned into error replies that FedAvg
drops (a study or a test wants to stop at the first), and nothing is written to the run
directory but the sites' own state (ledgers and size releases); ``on_round`` can add more.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords, aggregate_metricrecords

from medgan_core.config import RunConfig
from medgan_core.models import initial_gan
from medgan_core.models.state import gan_state
from medgan_core.progress import track
from medgan_core.site import SiteConfig, evaluate_round, train_round
from privacy.releases import EVALUATE_REPLY, TRAIN_REPLY, check_reply

__all__ = ["InProcessResult", "RoundRecord", "initial_weights", "run_inprocess_federation", "simulated_sites"]

logger = logging.getLogger(__name__)

#: FedAvg's ``weighted_by_key`` as our ServerApp uses it (Flower's default).
WEIGHT_KEY = "num-examples"


@dataclass(frozen=True)
class RoundRecord:
    """One round: what each site replied, keyed by site id.

    Attributes:
        server_round: 1-based, as in the ClientApp's ``server-round``.
        train: Each site's train reply metrics (keys: ``privacy.releases.TRAIN_REPLY``).
        aggregated: FedAvg's aggregate of those metrics (Flower's ``aggregate_metricrecords``).
        evaluate: Each site's evaluate reply, when the federation was asked to evaluate.
    """

    server_round: int
    train: dict[str, dict[str, float]]
    aggregated: dict[str, float]
    evaluate: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class InProcessResult:
    """The final global model and what every round released.

    Attributes:
        weights: The final global GAN state (as the ServerApp's ``checkpoints/latest.pt``).
        rounds: One :class:`RoundRecord` per round, in order.
        epsilon: Each site's epsilon spent after its last round (``inf`` without DP).
    """

    weights: dict[str, torch.Tensor]
    rounds: list[RoundRecord]
    epsilon: dict[str, float]


def initial_weights(run: RunConfig) -> dict[str, torch.Tensor]:
    """The state of :func:`initial_gan`: what the ServerApp sends in round 1."""
    return gan_state(initial_gan(run))


def simulated_sites(run: RunConfig) -> list[SiteConfig]:
    """The simulated sites of ``run``, one per ``site-records`` group (the simulation's nodes)."""
    return [SiteConfig.for_simulation(run, k) for k in range(len(run.site_record_groups()))]


def run_inprocess_federation(
    run: RunConfig, *, sites: Sequence[SiteConfig] | None = None, rounds: int | None = None,
    initial: dict[str, torch.Tensor] | None = None, run_id: str = "inprocess", evaluate: bool = False,
    threads: int | None = 1, on_round: Callable[[RoundRecord, dict[str, torch.Tensor]], None] | None = None,
) -> InProcessResult:
    """Run ``rounds`` federated rounds of ``run`` over ``sites`` in this process.

    Args:
        run: The run configuration every site receives.
        sites: The data holders (default :func:`simulated_sites`); one site is the
            centralized or local-only setting, trained by the same code.
        rounds: Server rounds (default ``run.num_server_rounds``, which is also what each
            site plans its noise over).
        initial: The initial global state (default :func:`initial_weights`, the ServerApp's).
        run_id: The run id the sites' ledgers record (the ClientApp passes Flower's).
        evaluate: Also ask every site for its evaluate reply after each round, as the
            ServerApp's FedAvg does with ``fraction-evaluate`` > 0.
        threads: Torch threads while sites train; 1 as in the ClientApp (float reductions
            depend on the thread count: other values do not reproduce a simulation bit for
            bit). ``None`` keeps the caller's setting.
        on_round: Called after each round with its record and the new global state (e.g. to
            write a checkpoint).

    Returns:
        The final global weights, every round's replies, and each site's epsilon spent.

    Raises:
        ValueError: ``sites`` is empty or repeats a site id, or ``rounds`` is below 1.
        PrivacyBudgetExceeded, ConfigError: a site refused (see :func:`train_round`).
    """
    sites = list(simulated_sites(run) if sites is None else sites)
    rounds = run.num_server_rounds if rounds is None else rounds
    if not sites:
        raise ValueError("sites is empty; pass at least one SiteConfig (default: the run's simulated sites)")
    if len({site.site_id for site in sites}) < len(sites):
        raise ValueError(f"site ids {[site.site_id for site in sites]} repeat; each site needs its own id")
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be at least 1")
    # The ServerApp sends ArrayRecord(state) and every site reads it back with
    # to_torch_state_dict(): the same conversions here, so the weights match bit for bit.
    arrays = ArrayRecord(initial if initial is not None else initial_weights(run))
    records: list[RoundRecord] = []
    with _torch_threads(threads):
        for server_round in track(range(1, rounds + 1), description=f"federation of {len(sites)} site(s): rounds"):
            replies, train = [], {}
            for site in sites:
                reply, train[site.site_id] = _train(site, run, run_id, server_round, arrays)
                replies.append(reply)
            arrays = aggregate_arrayrecords(replies, WEIGHT_KEY)
            record = RoundRecord(
                server_round=server_round, train=train,
                aggregated={k: float(v) for k, v in aggregate_metricrecords(replies, WEIGHT_KEY).items()},  # type: ignore[arg-type]
                evaluate={site.site_id: _evaluate(site, run, arrays) for site in sites} if evaluate else {},
            )
            records.append(record)
            logger.info("in-process round %d/%d: epsilon per site %s", server_round, rounds,
                        {k: round(m["epsilon"], 3) for k, m in train.items()})
            if on_round is not None:
                on_round(record, arrays.to_torch_state_dict())
    epsilon = {site_id: float(metrics["epsilon"]) for site_id, metrics in records[-1].train.items()}
    return InProcessResult(weights=arrays.to_torch_state_dict(), rounds=records, epsilon=epsilon)


def _train(site: SiteConfig, run: RunConfig, run_id: str, server_round: int,
           arrays: ArrayRecord) -> tuple[RecordDict, dict[str, float]]:
    """What the ClientApp's train handler does, without the message: the same call and reply."""
    # The same torch state dict the ClientApp passes (train_round's annotation says numpy).
    state, metrics = train_round(site=site, run=run, run_id=run_id, server_round=server_round,
                                 weights=arrays.to_torch_state_dict())  # type: ignore[arg-type]
    check_reply(metrics, TRAIN_REPLY)
    return RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(dict(metrics))}), metrics


def _evaluate(site: SiteConfig, run: RunConfig, arrays: ArrayRecord) -> dict[str, float]:
    metrics = evaluate_round(site=site, run=run, weights=arrays.to_torch_state_dict())  # type: ignore[arg-type]
    check_reply(metrics, EVALUATE_REPLY)
    return metrics


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
