"""CPU unit tests for the GPU path: the device of every collective, TORCH_CUDA_ARCH_LIST for
DeepSpeed's op builds, the version check, QLoRA and ``deepspeed.stage: auto``. The GPU runs
themselves are in tests/gpu/."""

from __future__ import annotations

import pytest

from workflow.launch import memory
from workflow.node import versions
from workflow.node import cuda_arch


# --- collectives: the tensor lives where the process group's backend wants it -------------------

@pytest.mark.parametrize("backend, device, expected", [
    ("nccl", "cuda:3", "cuda:3"),
    ("gloo", "cpu", "cpu"),
    ("gloo", "cuda:1", "cpu"),             # gloo on a GPU box: CPU tensors
    ("cpu:gloo,cuda:nccl", "cuda:0", "cpu"),
])
def test_collective_device_follows_the_backend(backend, device, expected):
    import torch

    from workflow.node.hf import collective_device

    assert collective_device(backend, torch.device(device)) == torch.device(expected)


def test_nccl_on_a_cpu_rank_is_an_error_not_a_hang():
    import torch

    from workflow.node.hf import collective_device

    with pytest.raises(RuntimeError, match="needs an accelerator device"):
        collective_device("nccl", torch.device("cpu"))


class FakeGroup:
    """torch.distributed at the call boundary: records what the preemption check sends."""

    def __init__(self, backend: str, world: int, others_requested: bool):
        self.backend, self.world, self.others = backend, world, others_requested
        self.sent: list = []

    def install(self, monkeypatch, torch):
        dist = torch.distributed
        monkeypatch.setattr(dist, "is_available", lambda: True)
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda: self.world)
        monkeypatch.setattr(dist, "get_backend", lambda: self.backend)
        monkeypatch.setattr(dist, "all_reduce", self.all_reduce)
        real = torch.tensor
        monkeypatch.setattr(torch, "tensor", lambda data, **kw: self.tensor(real, data, **kw))

    def tensor(self, real, data, device=None, **kw):
        self.sent.append(str(device))
        return real(data, **kw)  # CPU tensor here, whatever was asked: no GPU on this machine

    def all_reduce(self, tensor, op=None):
        if self.others:
            tensor.fill_(1)


@pytest.mark.parametrize("backend, device", [("nccl", "cuda:1"), ("gloo", "cpu")])
def test_preemption_check_reduces_on_the_group_device(backend, device, monkeypatch):
    import torch

    from workflow.node import hf

    group = FakeGroup(backend, world=2, others_requested=True)
    group.install(monkeypatch, torch)
    assert hf._any_rank(False, torch.device(device)) is True  # another rank was signalled
    assert group.sent == [device if backend == "nccl" else "cpu"]


def test_a_single_process_runs_no_collective(monkeypatch):
    import torch

    from workflow.node import hf

    group = FakeGroup("nccl", world=1, others_requested=True)
    group.install(monkeypatch, torch)
    assert hf._any_rank(False, torch.device("cuda:0")) is False and group.sent == []


@pytest.mark.parametrize("backend, device", [("nccl", "cuda:1"), ("gloo", "cpu")])
def test_a_pruning_decision_reaches_every_rank_through_the_group_device(backend, device, monkeypatch, tmp_path):
    """Rank 1 asks no study: rank 0 decided to prune; the decision arrives by a max-reduce on the
    group's device, and the rank saves and stops through the Trainer's control."""
    import types

    import torch

    from workflow.node.trial import PruningCallback
    from workflow.spec import TrialSpec

    group = FakeGroup(backend, world=2, others_requested=True)
    group.install(monkeypatch, torch)
    search = TrialSpec(study="s", slot=1, space={"train.seed": {"int": [0, 9]}}, pruner="asha", min_steps=10)
    callback = PruningCallback(search, tmp_path, is_main=False, number=4)
    control = types.SimpleNamespace(should_save=False, should_training_stop=False)
    args, state = types.SimpleNamespace(device=torch.device(device)), types.SimpleNamespace(global_step=30)
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 1.0})
    assert group.sent == [device if backend == "nccl" else "cpu"]
    assert control.should_save and control.should_training_stop and callback.pruned_at == 30


# --- TORCH_CUDA_ARCH_LIST ------------------------------------------------------------------------

@pytest.mark.parametrize("value, fixed", [
    ("9.0a", "9.0"),
    ("8.0;9.0a;10.0a+PTX", "8.0;9.0;10.0+PTX"),
    ("12.0f 10.0a", "12.0;10.0"),
    ("9.0a;9.0", "9.0"),
    ("Ampere;Hopper+PTX", "8.0;8.6;9.0+PTX"),
    ("9.0;sm_banana", "9.0"),
])
def test_arch_list_normalised(value, fixed):
    assert cuda_arch.normalize(value)[0] == fixed


def test_plain_arch_lists_are_left_alone():
    env = {"TORCH_CUDA_ARCH_LIST": "7.5 8.0;8.6+PTX"}
    assert cuda_arch.fix_environment(env) is None and env["TORCH_CUDA_ARCH_LIST"] == "7.5 8.0;8.6+PTX"


def test_nothing_usable_unsets_the_variable():
    env = {"TORCH_CUDA_ARCH_LIST": "banana"}
    assert "unset" in cuda_arch.fix_environment(env) and "TORCH_CUDA_ARCH_LIST" not in env


def test_deepspeed_op_builder_parses_the_normalised_list(monkeypatch):
    """DeepSpeed's own parser: 9.0a fails (its issue 7589); the normalised list builds sm_90."""
    from deepspeed.ops.op_builder.builder import CUDAOpBuilder

    class Probe(CUDAOpBuilder):
        BUILD_VAR, NAME = "DS_BUILD_PROBE", "probe"

        def __init__(self):
            super().__init__(name=self.NAME)

        def absolute_name(self):
            return self.NAME

        def sources(self):
            return []

    env = {"TORCH_CUDA_ARCH_LIST": "8.0;9.0a;10.0a+PTX"}
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", env["TORCH_CUDA_ARCH_LIST"])
    with pytest.raises(ValueError, match="0a"):
        Probe().compute_capability_args()
    assert "9.0a -> 9.0" in cuda_arch.fix_environment(env)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", env["TORCH_CUDA_ARCH_LIST"])
    flags = Probe().compute_capability_args()
    assert "-gencode=arch=compute_90,code=sm_90" in flags and "-gencode=arch=compute_100,code=compute_100" in flags


# --- versions ------------------------------------------------------------------------------------

def test_pins_come_from_setup_cfg():
    pins = versions.pins()
    assert pins["transformers"].startswith("==") and pins["peft"].startswith("==")
    assert "<=2.14.1" in pins["torch"]


def test_version_mismatches_are_reported():
    pins = versions.parse_requirements(["peft==0.21.2", "torch>=2.3,<=2.14.1", "deepspeed==0.19.8",
                                        "transformers==5.23.0  # comment", "rich>=13"])
    found = {"peft": "0.21.0", "torch": "2.13.0+cpu", "deepspeed": "absent", "transformers": "5.23.0"}
    assert versions.mismatches(found, pins) == ["deepspeed absent (pinned ==0.19.8)",
                                                "peft 0.21.0 (pinned ==0.21.2)"]
    assert versions.mismatches({**found, "peft": "0.21.2", "deepspeed": "0.19.8"}, pins) == []


def test_installed_stack_matches_the_pins():
    """This environment is the pinned one; a drift here is an install bug worth seeing."""
    assert versions.mismatches(versions.installed(), versions.pins()) == []


# --- QLoRA ---------------------------------------------------------------------------------------


def test_plan_accounts_for_quantised_base():
    spec = _xl_lora_spec()
    sizes = {q: memory.estimate(spec.model_copy(update={"lora": spec.lora.model_copy(update={"quantize": q})})
                                ).chosen.gpu_gb for q in ("none", "8bit", "4bit")}
    assert sizes["4bit"] < sizes["8bit"] < sizes["none"]
    size = memory.t5_params(memory.t5_config("google/flan-t5-xl"))
    embeddings = 2 * 32128 * 2048  # untied input and output embeddings stay 16-bit
    saved = (2 - (0.5 + 1 / 64)) * (size.total - embeddings) / memory.GIB
    assert sizes["none"] - sizes["4bit"] == pytest.approx(saved, rel=1e-6)


def _xl_lora_spec():
    from workflow.launch.config import load_spec

    return load_spec("jobs/flan-t5-xl-lora.yaml")


# --- deepspeed.stage: auto -------------------------------------------------------------------------

def _auto(path: str, **resources) -> tuple[dict, str]:
    from workflow.launch.config import load_spec

    overrides = [f"resources.{k}={v}" for k, v in resources.items()]
    return memory.auto_stage(load_spec(path, ["deepspeed.stage=auto", *overrides]))


def test_auto_picks_the_fastest_setup_that_fits():
    choice, reason = _auto("jobs/flan-t5-xl-lora.yaml")  # LoRA on A100-80GB: no sharding needed
    assert choice == {"enabled": False, "stage": 0, "offload_optimizer": "none", "offload_param": "none"}
    assert reason.startswith("deepspeed.stage auto -> no ZeRO") and "within 90% of the usable" in reason
    choice, reason = _auto("jobs/flan-t5-xxl-zero3.yaml")  # 11B full fine-tuning on 4 x 80 GB
    assert (choice["stage"], choice["offload_optimizer"]) == (2, "none") and "ZeRO-2: 68.0 GiB/GPU" in reason
    choice, reason = _auto("jobs/flan-t5-xxl-zero3-2x8.yaml", gpu_type="V100-32GB")  # 16 x 32 GB
    assert (choice["stage"], choice["offload_optimizer"]) == (3, "none") and "ZeRO-3:" in reason
    choice, _ = _auto("jobs/flan-t5-xxl-zero3.yaml", gpu_type="A100-40GB")  # 4 x 40 GB: offload
    assert choice["stage"] == 3 and choice["offload_optimizer"] == "cpu" and choice["offload_param"] == "none"


@pytest.mark.parametrize("mem_gb", [400, 200, 30])
def test_auto_takes_each_rung_in_order(mem_gb):
    """Every rung before the chosen one does not fit the GPU or the host memory, and the chosen one
    fits both."""
    from workflow.launch.config import load_spec

    for gpu in ("H100", "A100-40GB", "L40S", "A10G", "V100-16GB"):
        spec = load_spec("jobs/flan-t5-xxl-zero3.yaml", ["deepspeed.stage=auto", f"resources.gpu_type={gpu}",
                                                         f"resources.mem_gb={mem_gb}"])
        choice, _ = memory.auto_stage(spec)
        rungs = [{"enabled": s != 0, "stage": s, "offload_optimizer": "cpu" if o else "none",
                  "offload_param": "cpu" if p else "none"} for s, o, p in memory.AUTO_LADDER]
        usable = memory.gpu_memory_gb(gpu) * memory.HEADROOM * memory.AUTO_MARGIN
        chosen = [memory.estimate(spec.model_copy(update={"deepspeed": spec.deepspeed.model_copy(update=r)})
                                  ).chosen for r in rungs]
        fit = [o.total_gb <= usable and o.host_gb <= mem_gb for o in chosen]
        index = rungs.index(choice)
        assert not any(fit[:index]) and (fit[index] or index == len(rungs) - 1), (gpu, fit, index)


def test_the_plan_rewrites_auto_and_keeps_the_declared_hash(isolated):
    from workflow.launch import sweep as sweeps
    from workflow.launch.plan import make_plan

    sweep = sweeps.single("jobs/flan-t5-xxl-zero3.yaml", ["deepspeed.stage=auto"])
    declared = sweep.points[0].hash
    plan = make_plan(sweep)
    assert sweep.points[0].spec.deepspeed.stage == 2 and sweep.points[0].hash == declared
    assert plan.auto_choices[declared].startswith("deepspeed.stage auto -> ZeRO-2")


def test_a_gpu_point_without_cuda_fails_loudly(monkeypatch):
    """No silent fallback to the CPU: a GPU job on a node where CUDA is unusable stops at once."""
    import torch

    from workflow.errors import JobError
    from workflow.node import hf
    from workflow.spec import JobSpec

    def spec(gpus: int) -> JobSpec:
        return JobSpec(model_init_name="m", data_name="d.json", resources={"gpus_per_node": gpus})

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(JobError) as caught:
        hf.on_cpu(spec(2))
    text = caught.value.problems[0].render()
    assert "resources.gpus_per_node" in text and "2 GPU(s) asked" in text and "gpus_per_node=0" in text
    assert hf.on_cpu(spec(0)) is True
