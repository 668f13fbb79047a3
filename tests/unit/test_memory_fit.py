"""The memory plan tells the truth: host memory against ``resources.mem_gb`` (or says it is
unchecked), the knobs that shrink activations with figures that fit, the hub's download command,
and GiB wherever the figures are GiB."""

from __future__ import annotations

import math
import re
from importlib.metadata import distribution
from io import StringIO

import pytest
from rich.console import Console

from workflow.errors import SpecError
from workflow.launch import console as ui, hub, memory
from workflow.launch.memory_advice import gpu_hint, host_problem
from workflow.spec import JobSpec

XXL = "jobs/flan-t5-xxl-zero3.yaml"
# The example: 4 nodes x 8 GPUs, ZeRO-2 with the optimizer offloaded, mem_gb 400
OFFLOAD_4X8 = ("resources.nodes=4", "resources.gpus_per_node=8", "deepspeed.stage=2", "deepspeed.offload_optimizer=cpu",
               "train.gradient_accumulation_steps=1")
PAIR = re.compile(r"train\.train_batch_size=(\d+) with train\.gradient_accumulation_steps=(\d+)")


def _spec(*overrides: str, path: str = XXL) -> JobSpec:
    from workflow.launch.config import load_spec

    return load_spec(path, list(overrides))


def _xl(**train) -> JobSpec:
    """An activation-bound job: micro batch 512 of 2,048 source tokens on one node of 8 x 80 GiB."""
    return JobSpec(model_init_path="google/flan-t5-xl", data_name="demo.json", backend="slurm",
                   train={"train_batch_size": 512, "max_source_length": 2048, "max_target_length": 128,
                          "precision": "bf16", **train},
                   resources={"gpus_per_node": 8, "gpu_type": "A100-80GB", "mem_gb": 400})


def test_host_memory_above_mem_gb_does_not_fit():
    est = memory.estimate(_spec(*OFFLOAD_4X8))
    assert est.gpu_fits is True and est.host_mem_gb == 400
    assert est.chosen.host_gb > 1900 and est.host_fits is False and est.fits is False
    raised = memory.estimate(_spec(*OFFLOAD_4X8, f"resources.mem_gb={math.ceil(est.chosen.host_gb)}"))
    assert raised.host_fits is True and raised.fits is True, "the mem_gb the fix names is enough"
    assert est.suggestion and memory.host_fits(est.suggestion, 400) and memory.fits(est.suggestion, 80)


def test_the_host_problem_names_the_file_the_key_the_figures_and_the_fixes():
    spec = _spec(*OFFLOAD_4X8)
    est = memory.estimate(spec)
    problem = host_problem(XXL, spec, est)
    assert (problem.file, problem.key, problem.given) == (XXL, "resources.mem_gb", "400 GiB")
    assert f"{est.chosen.host_gb:.1f} GiB of host memory per node" in problem.expected
    assert f"raise resources.mem_gb to {math.ceil(est.chosen.host_gb)}" in problem.hint
    assert f"{est.suggestion.label} fits" in problem.hint and "--force" in problem.hint


def test_more_nodes_split_zero3_offloaded_states():
    spec = _spec("deepspeed.offload_optimizer=cpu", "resources.mem_gb=100", "train.global_batch_size=null")
    est = memory.estimate(spec)
    assert est.host_fits is False
    nodes = int(re.search(r"resources\.nodes=(\d+) splits", host_problem(XXL, spec, est).hint).group(1))
    at = {n: memory.estimate(spec.model_copy(update={"resources": spec.resources.model_copy(update={"nodes": n})}))
          for n in (nodes - 1, nodes)}
    assert at[nodes].host_fits is True and at[nodes - 1].host_fits is False, "the fewest nodes that fit"


def test_plan_refuses_a_point_whose_host_memory_does_not_fit(isolated):
    from workflow.launch import sweep as sweeps
    from workflow.launch.plan import make_plan, refuse_unfit

    with pytest.raises(SpecError) as caught:
        make_plan(sweeps.single(XXL, list(OFFLOAD_4X8)))
    assert [p.key for p in caught.value.problems] == ["resources.mem_gb"]
    plan = make_plan(sweeps.single(XXL, list(OFFLOAD_4X8)), force=True)  # what plan and --dry_run show
    with pytest.raises(SpecError) as shown:
        refuse_unfit(plan)
    assert shown.value.problems == caught.value.problems
    assert not (isolated / "runs").exists() and not (isolated / "mlflow").exists()


def test_unset_mem_gb_leaves_host_memory_unchecked_where_nothing_requests_it():
    local = JobSpec(model_init_path="google/flan-t5-xl", data_name="demo.json", train={"train_batch_size": 4},
                    resources={"gpus_per_node": 2, "gpu_type": "A100-80GB"})
    est = memory.estimate(local)
    assert est.host_mem_gb is None and est.gpu_fits is True and est.fits is None, "unknown, not 'fits'"
    notes = " ".join(_render(ui.memory_table(est, "p", "local")).split())
    assert "(unchecked: resources.mem_gb is unset, and the local backend requests none)" in notes
    slurm = memory.estimate(local.model_copy(update={"backend": "slurm"}))  # SLURM requests the default
    assert slurm.host_mem_gb == 8 and slurm.host_fits is False


def test_auto_skips_a_rung_the_host_memory_cannot_hold():
    choice, reason = memory.auto_stage(_spec("deepspeed.stage=auto", "resources.mem_gb=200"))
    assert choice["stage"] == 3 and choice["offload_optimizer"] == "none"
    assert "ZeRO-2: above resources.mem_gb" in reason and "of 200 GiB a node" in reason


def test_an_activation_bound_hint_names_the_micro_batch_and_checkpointing():
    spec = _xl()
    est = memory.estimate(spec)
    assert est.gpu_fits is False and est.suggestion is None and est.activations_gb > 10 * est.chosen.gpu_gb
    hint = gpu_hint(spec, est)
    assert "add nodes" not in hint and "do not shrink with more nodes" in hint
    assert "train.gradient_checkpointing=true" in hint
    micro, accumulation = map(int, PAIR.search(hint).groups())
    assert micro * accumulation == 512, "accumulation keeps the global batch"
    smaller = memory.estimate(_xl(train_batch_size=micro, gradient_accumulation_steps=accumulation))
    assert smaller.gpu_fits is True and not memory.estimate(_xl(train_batch_size=micro + 1)).gpu_fits


def test_checkpointing_comes_with_the_micro_batch_it_allows():
    spec = _xl(max_source_length=4096)  # even one sample does not fit without checkpointing
    hint = gpu_hint(spec, memory.estimate(spec))
    assert "even train.train_batch_size=1 needs" in hint and "; with it, " in hint
    micro, accumulation = map(int, PAIR.search(hint.split("; with it, ")[1]).groups())
    fitted = memory.estimate(_xl(max_source_length=4096, gradient_checkpointing=True, train_batch_size=micro,
                                 gradient_accumulation_steps=accumulation))
    assert fitted.gpu_fits is True and micro * accumulation == 512


def test_a_shorter_source_is_the_longest_halving_that_fits():
    spec = _xl(train_batch_size=8, max_source_length=4096, gradient_accumulation_steps=1)
    length = int(re.search(r"train\.max_source_length=(\d+):", gpu_hint(spec, memory.estimate(spec))).group(1))
    assert memory.estimate(_xl(train_batch_size=8, max_source_length=length)).gpu_fits is True
    assert memory.estimate(_xl(train_batch_size=8, max_source_length=length * 2)).gpu_fits is False


def test_the_download_hint_is_the_installed_hub_cli():
    scripts = {e.name for e in distribution("huggingface_hub").entry_points if e.group == "console_scripts"}
    assert "hf" in scripts, scripts
    assert hub.download_command("google/flan-t5-xxl") == "hf download google/flan-t5-xxl"
    assert hub.download_command("google/flan-t5-xxl", local=True).endswith("--local-dir ./google/flan-t5-xxl")


def test_the_printed_plan_says_gib_and_which_memory_is_short(isolated, monkeypatch):
    from workflow.launch import sweep as sweeps
    from workflow.launch.plan import make_plan

    out = StringIO()
    monkeypatch.setattr(ui, "console", Console(file=out, width=80, emoji=False))
    ui.print_memory(make_plan(sweeps.single(XXL, ["deepspeed.offload_optimizer=cpu", "resources.mem_gb=100",
                                                  "train.global_batch_size=null"]), force=True))
    text = out.getvalue()
    assert "GiB per GPU" in text and "does not fit 100 GiB of host memory a node" in text and "no (host)" in text
    assert not re.search(r"\bGB\b", text), text
    assert max(map(len, text.splitlines())) <= 80


def _render(renderable) -> str:
    out = StringIO()
    Console(file=out, width=80, emoji=False).print(renderable)
    return out.getvalue()
