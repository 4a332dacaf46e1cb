"""The ``device`` setting: spelled and checked at the boundary, resolved where the work runs,
the site's own value winning, CUDA refused with the fix where there is none, Ray asked for
GPUs only on request, and CPU training unchanged bit for bit. CPU-only: CUDA's absence or
presence is simulated by patching ``torch.cuda``."""

import pytest
import torch

from medgan_core.config import RunConfig
from medgan_core.device import resolve_device
from medgan_core.errors import ConfigError
from medgan_core.models.registry import create_gan
from medgan_core.site import SiteConfig, site_device
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan
from medgan_core.training.patient_dp import PatientDPSettings
from medgan_core.training.steps import secret_generators
from simulations.federation import check_gpus_per_site, federation_config


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


# ---- resolving -------------------------------------------------------------------------


def test_auto_is_the_cpu_without_cuda_and_cuda_with_it(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_takes_the_gpu_when_pytorch_sees_one(one_gpu):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_auto_resolves_to_the_cpu_on_this_machine():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(RunConfig().device).type == expected


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_is_one_line_naming_device_and_the_fix(no_cuda, name):
    with pytest.raises(ConfigError) as caught:
        resolve_device(name)
    message = str(caught.value)
    assert message.startswith(f"run-config: device = {name!r} asks for CUDA, but PyTorch sees no GPU")
    assert "fix: set device = 'cpu' or 'auto'" in message and "\n" not in message


def test_a_gpu_index_past_the_last_gpu_is_refused(one_gpu):
    with pytest.raises(ConfigError, match=r"device = 'cuda:3' but this machine has 1 visible CUDA device"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:-1", "cuda:0 ", "mps", "", "cuda:x"])
def test_bad_spellings_are_refused_by_the_run_config_and_the_resolver(name):
    with pytest.raises(ConfigError, match=r"run-config: device = .* is invalid; use 'auto', 'cpu', 'cuda' or "
                                          r"'cuda:N'"):
        RunConfig.from_mapping({"device": name})
    with pytest.raises(ConfigError, match="is invalid"):
        resolve_device(name)


def test_the_run_config_accepts_every_spelling_without_asking_for_a_gpu(no_cuda):
    # Spelling is checked where the value is read (the coordinator may have no GPU);
    # whether CUDA is there is the site's question, asked when it trains.
    for name in ("auto", "cpu", "cuda", "cuda:7"):
        assert RunConfig.from_mapping({"device": name}).device == name
    assert RunConfig().device == "auto"


# ---- the site's own value wins ----------------------------------------------------------


def _site_file(tmp_path, device_line=""):
    path = tmp_path / "site.toml"
    path.write_text(f'[site]\nid = "hospital-a"\n{device_line}\n'
                    '[data]\nmodality = "ecg"\ndir = "."\nrecords = ["100"]\n'
                    '[privacy]\ntarget-epsilon = 10.0\ntarget-delta = 1e-5\nledger = "state/ledger.json"\n')
    return path


def test_the_site_file_device_wins_over_the_run_config(tmp_path, no_cuda):
    site = SiteConfig.from_toml(_site_file(tmp_path, 'device = "cpu"'))
    run = RunConfig(device="cuda")

    assert site.device == "cpu" and site.device_name(run) == "cpu"
    assert site_device(site, run) == torch.device("cpu")


def test_without_a_site_device_the_run_decides(tmp_path, no_cuda):
    site = SiteConfig.from_toml(_site_file(tmp_path))

    assert site.device is None
    assert site_device(site, RunConfig(device="cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"^hospital-a: run-config: device = 'cuda' asks for CUDA"):
        site_device(site, RunConfig(device="cuda"))


def test_a_site_asking_for_cuda_it_lacks_names_its_own_setting(tmp_path, no_cuda):
    site = SiteConfig.from_toml(_site_file(tmp_path, 'device = "cuda:0"'))

    with pytest.raises(ConfigError, match=r"^hospital-a: \[site\] device = 'cuda:0' asks for CUDA.*"
                                          r"fix: set \[site\] device = 'cpu' or 'auto'"):
        site_device(site, RunConfig(device="cpu"))


def test_a_bad_site_device_is_one_line_naming_the_file_and_key(tmp_path):
    path = _site_file(tmp_path, 'device = "gpu0"')
    with pytest.raises(ConfigError, match=r"\[site\] device = 'gpu0' is invalid; use 'auto', 'cpu'") as caught:
        SiteConfig.from_toml(path)
    assert str(caught.value).startswith(str(path))


def test_a_site_refuses_cuda_before_anything_is_charged(small_run, no_cuda):
    from dataclasses import replace

    from medgan_core.models import build_gan
    from medgan_core.models.state import gan_state
    from medgan_core.site import train_round

    site = SiteConfig.for_simulation(small_run, 0)
    weights = {k: v.numpy() for k, v in gan_state(build_gan(small_run)).items()}
    with pytest.raises(ConfigError, match="device = 'cuda' asks for CUDA"):
        train_round(site=site, run=replace(small_run, device="cuda"), run_id="t", server_round=1, weights=weights)
    assert not site.ledger_path.exists()  # no release, no charge


# ---- Ray's GPU resources, only on request ------------------------------------------------


def test_federation_config_asks_ray_for_gpus_only_when_told():
    plain = federation_config(num_sites=3, cpus=8)
    shared = federation_config(num_sites=3, cpus=8, gpus_per_site=0.25)
    on_cluster = federation_config(num_sites=3, cpus=8, ray_address="127.0.0.1:6379", gpus_per_site=1.0)

    assert "num_gpus" not in plain
    assert shared == ("num_supernodes=3 client_resources_num_cpus=1 client_resources_num_gpus=0.25 "
                      "init_args_num_cpus=8 verbose=false")
    assert on_cluster == "num_supernodes=3 client_resources_num_cpus=1 client_resources_num_gpus=1.0 verbose=false"


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5, float("nan"), float("inf")])
def test_a_gpu_share_ray_cannot_schedule_is_refused(share, one_gpu):
    with pytest.raises(ConfigError, match=r"--gpus-per-site .* is invalid; use a share of one GPU in \(0, 1\]"):
        check_gpus_per_site(share)


def test_gpus_per_site_on_a_machine_without_a_gpu_is_refused_unless_on_a_cluster(no_cuda):
    check_gpus_per_site(None)
    with pytest.raises(ConfigError, match=r"--gpus-per-site 0.25 asks Ray for GPUs, but PyTorch sees no GPU"):
        check_gpus_per_site(0.25)
    check_gpus_per_site(0.25, ray_address="127.0.0.1:6379")  # the cluster's GPUs may be on other nodes
    check_gpus_per_site(2.0, ray_address="127.0.0.1:6379")


def test_simulate_refuses_gpus_per_site_without_a_gpu_in_one_line(tmp_path, no_cuda):
    from medgan_cli.main import main

    with pytest.raises(SystemExit) as caught:
        main(["simulate", "--run-dir", str(tmp_path / "run"), "--gpus-per-site", "0.25"])
    assert str(caught.value).startswith("medgan simulate: --gpus-per-site 0.25 asks Ray for GPUs")
    assert not (tmp_path / "run").exists()


def test_simulate_refuses_a_cuda_device_no_simulated_site_could_use_in_one_line(tmp_path, no_cuda):
    from medgan_cli.main import main

    with pytest.raises(SystemExit) as caught:
        main(["simulate", "--run-dir", str(tmp_path / "run"), "--run-config", "device='cuda'"])
    assert str(caught.value).startswith("medgan simulate: run-config: device = 'cuda' asks for CUDA")
    assert not (tmp_path / "run").exists()


def test_a_cuda_device_needs_gpus_per_site_on_a_private_ray(one_gpu):
    from simulations.federation import check_run_device, resolve_run_config

    run = resolve_run_config({"device": "cuda"})
    with pytest.raises(ConfigError, match=r"device = 'cuda' but Ray shows the simulated sites no GPU unless asked; "
                                          r"fix: add --gpus-per-site"):
        check_run_device(run, gpus_per_site=None)
    check_run_device(run, gpus_per_site=0.25)
    check_run_device(run, gpus_per_site=None, ray_address="127.0.0.1:6379")  # the cluster decides
    check_run_device(resolve_run_config({"device": "auto"}), gpus_per_site=None)


def test_generate_refuses_cuda_without_a_gpu_in_one_line(tmp_path, no_cuda):
    from medgan_cli.main import main

    with pytest.raises(SystemExit) as caught:
        main(["generate", "--run-dir", str(tmp_path), "--device", "cuda"])
    assert str(caught.value).startswith("medgan generate: --device = 'cuda' asks for CUDA")
    assert not (tmp_path / "generated").exists()


# ---- CPU training is unchanged, bit for bit ------------------------------------------------


def test_cpu_generators_draw_what_plain_generators_draw():
    noise, fake, sampling = secret_generators(11, device="cpu")
    for generator, seed in ((noise, 11), (fake, 12), (sampling, 13)):
        assert generator.device == torch.device("cpu")
        assert torch.equal(torch.randn(5, generator=generator), torch.randn(5, generator=torch.Generator().manual_seed(seed)))


def _data(n=128, length=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, length, generator=g) * 2 - 1, torch.randint(0, 2, (n,), generator=g)


def _trained_state(dp, device, **extra):
    x, y = _data()
    torch.manual_seed(0)
    gan = create_gan("dcgan1d")
    options = {} if device is None else {"device": device}
    config = LocalTrainingConfig(local_steps=3, batch_size=16, seed=5, mode_seeking_weight=0.1, generator_ema=0.5,
                                 **options)
    result = train_local_gan(gan=gan, beats=x, labels=y, config=config, dp=dp, **extra)
    return {**gan.generator.state_dict(), **{f"d.{k}": v for k, v in gan.discriminator.state_dict().items()}}, result


@pytest.mark.parametrize("unit", ["non-dp", "record", "patient"])
def test_training_on_device_cpu_equals_the_default_bit_for_bit(unit):
    dp, extra = {
        "non-dp": (None, {}),
        "record": (DPSettings(noise_multiplier=1.0), {}),
        "patient": (PatientDPSettings(noise_multiplier=1.0, public_patient_count=None, expected_patients_per_step=4,
                                      records_per_patient=2), {"patient_ids": [i // 4 for i in range(128)]}),
    }[unit]
    default, default_result = _trained_state(dp, None, **extra)
    for device in ("cpu", torch.device("cpu"), resolve_device("cpu")):
        state, result = _trained_state(dp, device, **extra)
        assert state.keys() == default.keys()
        assert all(torch.equal(state[k], default[k]) for k in default)
        assert (result.d_loss, result.g_loss, result.dp_history) == (
            default_result.d_loss, default_result.g_loss, default_result.dp_history)
        assert all(v.device.type == "cpu" for v in state.values())  # what leaves the site is on the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_returns_cpu_models_and_counts_the_same_steps():
    state, result = _trained_state(DPSettings(noise_multiplier=1.0), "cuda")
    assert all(v.device.type == "cpu" for v in state.values())
    assert result.dp_history == [(1.0, 16 / 128, 3)]


def test_site_check_says_where_the_site_trains_and_refuses_a_gpu_it_lacks(tmp_path, no_cuda):
    import shutil
    from dataclasses import replace
    from pathlib import Path

    from client.daemon import site_report

    for ext in ("hea", "dat", "atr"):
        shutil.copy(Path(__file__).resolve().parents[1] / "data" / "ecg" / "mitdb" / f"105.{ext}", tmp_path)
    site = replace(SiteConfig.from_toml(_site_file(tmp_path)), data_paths=(str(tmp_path / "105"),))

    assert "device: as the run asks (its default 'auto' is cpu (PyTorch sees no GPU) here" in site_report(site)
    assert "device: [site] device = 'cpu': cpu" in site_report(replace(site, device="cpu"))
    with pytest.raises(ConfigError, match=r"hospital-a: \[site\] device = 'cuda' asks for CUDA"):
        site_report(replace(site, device="cuda"))
