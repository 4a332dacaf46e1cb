"""Resume (run-config ``resume-from``): the ServerApp continues a run directory from its
latest checkpoint, with the round numbers the sites' noise derivation and ledgers rely on,
and keeps the run's metrics."""

import json

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, MessageType, MetricRecord, RecordDict

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.run_dir import RunDirectory
from server.app import main as server_main
from server.resume import resume_point


class EchoGrid:
    """Stands in for the SuperLink: every site returns the global weights + 1."""

    def __init__(self) -> None:
        self.train_rounds: list[int] = []
        self.first_weights: dict[str, torch.Tensor] | None = None

    def get_node_ids(self):
        return [11, 12]

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            if msg.metadata.message_type == MessageType.TRAIN:
                self.train_rounds.append(int(msg.content["config"]["server-round"]))
                weights = msg.content["arrays"].to_torch_state_dict()
                if self.first_weights is None:
                    self.first_weights = weights
                content = RecordDict({"arrays": ArrayRecord({k: v + 1 for k, v in weights.items()}),
                                      "metrics": MetricRecord({"num-examples": 10.0, "epsilon": 1.0})})
            else:
                content = RecordDict({"metrics": MetricRecord({"num-examples": 10.0, "d-loss": 0.5})})
            replies.append(Message(content=content, reply_to=msg))
        return replies


def _context(run: RunConfig) -> Context:
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run.to_mapping())


def test_resumed_run_continues_weights_round_numbers_and_metrics(flower_identity, tmp_path):
    run_dir = str(tmp_path / "run")
    first = EchoGrid()
    server_main(first, _context(RunConfig(num_server_rounds=2, run_dir=run_dir)))
    assert first.train_rounds == [1, 1, 2, 2]
    round_two = RunDirectory(run_dir).load_checkpoint()["state"]

    resumed = EchoGrid()
    server_main(resumed, _context(RunConfig(num_server_rounds=4, run_dir=run_dir, resume_from=run_dir)))

    # Sites are asked for rounds 3 and 4 (their noise plan and ledgers use these numbers),
    # starting from the round-2 weights, not from a fresh model.
    assert resumed.train_rounds == [3, 3, 4, 4]
    assert all(torch.equal(resumed.first_weights[k], round_two[k]) for k in round_two)
    history = RunDirectory(run_dir).read_metrics()
    assert [h["round"] for h in history] == [1, 2, 3, 4]
    assert sorted(p.name for p in RunDirectory(run_dir).checkpoints.glob("round-*.pt")) == [
        "round-001.pt", "round-002.pt", "round-003.pt", "round-004.pt"]
    final = RunDirectory(run_dir).load_checkpoint()
    assert final["round"] == 4
    # Each round adds exactly 1 to every weight: 4 rounds in all, not 2 + a restart.
    key = next(iter(round_two))
    assert torch.allclose(final["state"][key], round_two[key] + 2)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resume-from"] == run_dir


def test_fresh_run_has_no_resume_point(tmp_path):
    assert resume_point(RunConfig(run_dir=str(tmp_path)), {"model": "dcgan1d"}) == (None, 0)


def test_resume_refuses_a_missing_checkpoint_a_different_model_or_a_finished_run(tmp_path):
    run_dir = RunDirectory(tmp_path)
    meta = {"model": "dcgan1d", "modality": "ecg", "latent-dim": 32, "image-size": 64}
    with pytest.raises(ConfigError, match="no checkpoint"):
        resume_point(RunConfig(resume_from=str(tmp_path)), meta)
    run_dir.save_checkpoint(2, {"generator.w": torch.zeros(2)}, meta)
    with pytest.raises(ConfigError, match="latent-dim=32 \\(run asks 16\\)"):
        resume_point(RunConfig(resume_from=str(tmp_path), num_server_rounds=4), {**meta, "latent-dim": 16})
    with pytest.raises(ConfigError, match="raise num-server-rounds"):
        resume_point(RunConfig(resume_from=str(tmp_path), num_server_rounds=2), meta)
    state, done = resume_point(RunConfig(resume_from=str(tmp_path), num_server_rounds=3), meta)
    assert done == 2 and torch.equal(state["generator.w"], torch.zeros(2))


def test_checkpoint_of_another_architecture_fails_at_the_server_not_at_the_sites(flower_identity, tmp_path):
    run = RunConfig(num_server_rounds=3, run_dir=str(tmp_path), resume_from=str(tmp_path))
    meta = {"model": run.model, "modality": run.modality, "latent-dim": run.latent_dim,
            "image-size": run.image_size}
    RunDirectory(tmp_path).save_checkpoint(1, {"generator.old_layer": torch.zeros(2)}, meta)
    grid = EchoGrid()
    with pytest.raises(KeyError, match="do not match the model"):
        server_main(grid, _context(run))
    assert grid.train_rounds == []  # nothing was sent


def test_round_offset_shifts_the_central_evaluation_rounds_too():
    from server.resume import RoundOffset

    seen = []
    shifted = RoundOffset(inner=None, offset=2).shift(lambda rnd, arrays: seen.append(rnd))
    shifted(0, None), shifted(1, None)
    assert seen == [2, 3]
    assert RoundOffset(inner=None, offset=2).shift(None) is None
