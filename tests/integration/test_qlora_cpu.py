"""The QLoRA node path on bitsandbytes' CPU backend: 4-bit NF4 loading, k-bit preparation, LoRA
adapters with non-reentrant checkpointing, a few optimizer steps, and the full-precision export.

A spec asking for ``lora.quantize`` on CPU-only resources is refused (tests/test_gpu_path.py);
this test calls the same node functions directly, so the wiring is checked without a GPU. The
GPU run is in tests/gpu."""

from __future__ import annotations


import pytest

bnb = pytest.importorskip("bitsandbytes")


def test_qlora_loads_4bit_trains_adapters_and_exports_full_precision(mount, tmp_path):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from workflow.node import hf
    from workflow.node.export import export
    from workflow.jsonio import write_json
    from workflow.rundir import RunDir
    from workflow.spec import JobSpec

    source = str(mount / "models/tiny-t5")
    spec = JobSpec.model_validate({
        "model_init_path": source, "data_name": "demo.json", "resources": {"gpus_per_node": 1},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q", "v", "wi", "wo"], "quantize": "4bit"},
        "train": {"precision": "bf16", "gradient_checkpointing": True}})
    loading = hf.quantized_loading(spec)
    assert loading["quantization_config"].bnb_4bit_quant_type == "nf4" and loading["device_map"] == {"": 0}
    loading["device_map"] = {"": "cpu"}  # the node puts it on its GPU; here bitsandbytes' CPU backend
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_pretrained(source, **loading)
    full = AutoModelForSeq2SeqLM.from_pretrained(source)
    assert isinstance(model.encoder.block[0].layer[0].SelfAttention.q, bnb.nn.Linear4bit)
    assert hf._param_count(model) == sum(p.numel() for p in full.parameters())  # 4-bit packing undone

    model = hf.apply_lora(model, spec.lora, gradient_checkpointing=True)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    tokenizer = AutoTokenizer.from_pretrained(source)
    batch = tokenizer(["translate: red big dog", "translate: blue small cat"], return_tensors="pt", padding=True)
    labels = tokenizer(text_target=["rouge grand chien", "bleu petit chat"], return_tensors="pt",
                       padding=True).input_ids
    optimizer = torch.optim.AdamW(trainable, lr=3e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses

    rd = RunDir(tmp_path / "run")
    model.save_pretrained(str(rd.model))
    tokenizer.save_pretrained(str(rd.model))
    write_json(rd.job, {"spec": spec.model_dump(mode="json"), "context": {}})
    result = export(rd, tmp_path / "export")
    assert result.kind == "lora-merged" and result.max_abs_diff <= 1e-5
    merged = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "export"))
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
