"""The training knobs: train.num_epochs (or max_steps), lr_scheduler, label_smoothing and
load_best_at_end with best_metric; each validated in the spec and carried into the Trainer's
arguments (built here, never trained). And ``logs --follow`` on a log that grows."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from workflow.launch import lifecycle
from workflow.launch.manifest import Manifest, PointRecord
from workflow.rundir import RunDir
from workflow.spec import JobSpec
from workflow.spec_errors import problems_from
from workflow.states import State

GOOD = {"model_init_name": "tiny-t5", "data_name": "demo.json"}


def spec(task: str = "seq2seq", **train) -> JobSpec:
    return JobSpec.model_validate({**GOOD, "task": task, "train": train})


def rejected(task: str = "seq2seq", **train) -> dict[str, str]:
    """Each problem of an invalid train block, by key path."""
    with pytest.raises(ValidationError) as info:
        spec(task, **train)
    return {p.key: p.render() for p in problems_from(info.value, "job.yaml")}


def test_the_defaults_train_as_before():
    kwargs = spec().train.schedule_kwargs()
    assert kwargs == {"max_steps": 1000, "warmup_steps": 0, "lr_scheduler_type": "linear",
                      "label_smoothing_factor": 0.0}


def test_num_epochs_replaces_the_default_max_steps():
    train = spec(num_epochs=2).train
    assert train.max_steps is None
    assert train.schedule_kwargs()["max_steps"] == -1 and train.schedule_kwargs()["num_train_epochs"] == 2
    again = JobSpec.model_validate(spec(num_epochs=2).model_dump(mode="json"))  # job.json on the node
    assert (again.train.max_steps, again.train.num_epochs) == (None, 2)
    assert spec(num_epochs=1.5, max_steps=None).train.num_epochs == 1.5


def test_max_steps_and_num_epochs_both_given_is_an_error():
    found = rejected(max_steps=300, num_epochs=2)
    assert "train.max_steps" in found["train.num_epochs"] and "both" in found["train.num_epochs"]
    assert "train.max_steps" in rejected(max_steps=None)


def test_schedulers_map_to_transformers_and_a_typo_gets_a_suggestion():
    for name in ("linear", "cosine", "constant_with_warmup"):
        assert spec(lr_scheduler=name).train.schedule_kwargs()["lr_scheduler_type"] == name
    message = rejected(lr_scheduler="cosin")["train.lr_scheduler"]
    assert "'cosin'" in message and "did you mean 'cosine'?" in message and "constant_with_warmup" in message


def test_label_smoothing_is_a_factor_below_one_and_not_for_the_classifier():
    assert spec(label_smoothing=0.1).train.schedule_kwargs()["label_smoothing_factor"] == 0.1
    assert "1.5" in rejected(label_smoothing=1.5)["train.label_smoothing"]
    assert "-0.1" in rejected(label_smoothing=-0.1)["train.label_smoothing"]
    message = rejected("classifier", label_smoothing=0.1)["train.label_smoothing"]
    assert "classifier" in message and "0.1" in message
    assert spec("classifier").train.label_smoothing == 0


def test_load_best_at_end_chooses_by_a_metric_of_the_registry():
    kwargs = spec(load_best_at_end=True, save_steps=400).train.schedule_kwargs()
    assert kwargs["load_best_model_at_end"] is True and kwargs["metric_for_best_model"] == "eval_loss"
    assert kwargs["greater_is_better"] is False  # the registry: eval_loss is lower-is-better
    assert "did you mean 'eval_loss'?" in rejected(best_metric="eval_los")["train.best_metric"]
    assert "after training" in rejected(best_metric="exact_match")["train.best_metric"]


def test_load_best_at_end_needs_a_save_at_an_evaluation():
    message = rejected(load_best_at_end=True)["train.save_steps"]  # the defaults: 500 and 200
    assert "multiple of eval_steps (200)" in message and "got 500" in message and "save_steps=400" in message
    assert spec(save_steps=500).train.load_best_at_end is False  # without it, as before


def test_training_arguments_carry_the_knobs(tmp_path):
    from workflow.node import hf

    job = spec(num_epochs=3, lr_scheduler="cosine", warmup_steps=5, label_smoothing=0.1, load_best_at_end=True,
               save_steps=400, eval_steps=200)
    args = hf.training_args(job, RunDir(tmp_path / "point"))
    assert (args.max_steps, args.num_train_epochs, args.warmup_steps) == (-1, 3, 5)
    assert args.lr_scheduler_type == "cosine" and args.label_smoothing_factor == 0.1
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    assert args.greater_is_better is False
    before = hf.training_args(spec(), RunDir(tmp_path / "default"))
    assert (before.max_steps, before.lr_scheduler_type, before.label_smoothing_factor) == (1000, "linear", 0.0)
    assert before.load_best_model_at_end is False and before.metric_for_best_model is None


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("WF_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def point_sweep(state: State = State.RUNNING) -> tuple[Manifest, RunDir]:
    """A sweep of one local point whose job is this process (alive), its log begun."""
    manifest = Manifest("follow", "follow.yaml")
    rd = RunDir(manifest.path.parent / "p0-00000000")
    rd.root.mkdir(parents=True)
    rd.log.write_text("loading\n")
    manifest.points["0" * 12] = PointRecord(0, "p0", "0" * 12, str(rd.root), state=state, backend="local",
                                            job_id=f"local:{os.getpid()}")
    manifest.save()
    rd.write_state(state=state)
    return manifest, rd


def test_logs_follow_prints_what_the_log_gains_until_the_point_ends(runs, monkeypatch):
    monkeypatch.setattr(lifecycle, "FOLLOW_STATE_POLLS", 2)
    _, rd = point_sweep()
    growth = iter(["step 1", "step 2 (half a li", "ne)\nstep 3", None, None])

    def sleep(_seconds):  # between reads the job writes more
        more = next(growth)
        if more is None:
            rd.write_state(state=State.COMPLETED)
            return
        with rd.log.open("a") as handle:
            handle.write(more + "\n" if more.endswith(("1", "3")) else more)

    chunks = list(lifecycle.logs("follow", None, 40, follow=True, sleep=sleep))
    lines = [line for _, text in chunks for line in text]
    assert lines == ["loading", "step 1", "step 2 (half a line)", "step 3"]  # and it ended: growth is not spent


def test_logs_follow_of_an_ended_point_prints_its_tail_and_ends(runs):
    point_sweep(State.COMPLETED)

    def sleep(_seconds):
        raise AssertionError("an ended point is not waited for")

    assert [lines for _, lines in lifecycle.logs("follow", "0", 40, follow=True, sleep=sleep)] == [["loading"]]


def test_the_deepspeed_tuning_keys_reach_the_zero_config():
    from workflow.node.zero import deepspeed_config
    from workflow.spec import DeepSpeedSpec

    two = deepspeed_config(DeepSpeedSpec(enabled=True, stage=2, reduce_bucket_size=500_000_000,
                                         allgather_bucket_size=200_000_000))["zero_optimization"]
    assert (two["reduce_bucket_size"], two["allgather_bucket_size"]) == (500_000_000, 2e8)
    three = deepspeed_config(DeepSpeedSpec(enabled=True, stage=3, stage3_param_persistence_threshold=10_000_000,
                                           stage3_prefetch_bucket_size=50_000_000,
                                           stage3_max_live_parameters=3_000_000_000))["zero_optimization"]
    assert (three["stage3_param_persistence_threshold"], three["stage3_prefetch_bucket_size"],
            three["stage3_max_live_parameters"]) == (10_000_000, 50_000_000, 3e9)
    assert deepspeed_config(DeepSpeedSpec(enabled=True, stage=3))["zero_optimization"][
        "stage3_param_persistence_threshold"] == "auto"


def test_flex_attention_falls_back_to_sdpa_for_training_on_cpu(caplog):
    import torch

    from workflow.node import speed
    from workflow.spec import SpeedSpec

    assert not torch.cuda.is_available()
    with caplog.at_level("WARNING", logger="workflow.speed"):
        assert speed.attention(SpeedSpec(attention="flex_attention")) == "sdpa"
    assert "cannot train on CPU" in caplog.text
    assert speed.attention(SpeedSpec(attention="flex_attention"), training=False) == speed.FLEX
    assert speed.attention(SpeedSpec(attention="eager")) == "eager"


def test_the_preemption_check_runs_every_n_steps_only(monkeypatch):
    import types

    from workflow.node import hf

    asked = []
    monkeypatch.setattr(hf, "_any_rank", lambda value, device: asked.append(value) or False)
    callback = hf.PreemptionCallback(every=10)
    control = types.SimpleNamespace(should_save=False, should_training_stop=False)
    for step in range(1, 31):
        callback.on_step_end(types.SimpleNamespace(device="cpu"), types.SimpleNamespace(global_step=step), control)
    assert len(asked) == 3, "steps 10, 20 and 30: one agreement (a collective, with several ranks) each"
