import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import small_llama_config, stage_argv
from transformers import LlamaForCausalLM

from prunetune.config import PrunetuneError
from prunetune.efficiency import (
    decode_step,
    ideal_speedup,
    interquartile_mean,
    prefill,
    pruning_speed,
    speed_runs,
    summarize_runs,
    timed_turns,
)
from prunetune.pruning import remove_layers


def small_model(layers: int = 3) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(small_llama_config(layers, vocab_size=128)).eval()


def test_interquartile_mean_drops_a_quarter_at_each_end():
    assert interquartile_mean([5, 1, 100, 3, 2, 4, 6, 0.5]) == pytest.approx((2 + 3 + 4 + 5) / 4)  # 0.5, 1 | 6, 100
    assert interquartile_mean([0.010, 0.5, 0.012]) == pytest.approx(0.012)  # three values: the median
    assert interquartile_mean([7.0]) == 7.0


def test_summarize_runs_turns_interquartile_means_into_latency_and_throughput():
    runs = {
        "b1": {"m": {"prefill": [0.010, 0.012, 0.5], "decode": [0.02, 0.02, 0.02, 1.0]}},
        "b2": {"m": {"prefill": [0.020], "decode": [0.04, 0.05, 0.04, 0.01]}},
    }
    speed = summarize_runs(runs)["m"]
    assert speed["prefill_ms_b1"] == pytest.approx(12.0) and speed["prefill_ms_b2"] == pytest.approx(20.0)
    assert speed["decode_tokens_per_s_b1"] == pytest.approx(1 / 0.02)  # the 1 s stall does not count
    assert speed["decode_tokens_per_s_b2"] == pytest.approx(2 / 0.04)  # middle half of 0.01, 0.04, 0.04, 0.05


@torch.no_grad()
def test_prefill_and_decode_steps_reproduce_greedy_generate():
    model = small_model()
    input_ids = torch.randint(10, 128, (2, 6), generator=torch.Generator().manual_seed(1))
    expected = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=4, do_sample=False)
    output, tokens = prefill(model, input_ids), []
    for _ in range(4):
        tokens.append(output.logits[:, -1:].argmax(-1))
        output = decode_step(model, output)
    assert torch.equal(torch.cat(tokens, dim=1), expected[:, 6:])


def test_models_take_turns_at_every_step_in_flipping_order():
    full = small_model()
    models = {"full": full, "pruned": remove_layers(copy.deepcopy(full), [2])}
    calls: list[str] = []
    for name, model in models.items():
        model.register_forward_pre_hook(lambda module, args, name=name: calls.append(name))
    timings = timed_turns(models, torch.randint(10, 128, (1, 5)), new_tokens=3, first=0)
    # prefill, then decode steps 0, 1, 2: the pair's order flips at every step
    assert calls == ["full", "pruned", "pruned", "full", "full", "pruned", "pruned", "full"]
    for timing in timings.values():
        assert len(timing["prefill"]) == 1 and len(timing["decode"]) == 3
        assert all(seconds > 0 for seconds in timing["prefill"] + timing["decode"])

    runs = speed_runs(models, {"prompt_tokens": 5, "new_tokens": 3, "batch_size": 2, "repeats": 4})
    assert set(runs) == {"b1", "b2"}
    for per_model in runs.values():  # the warm-up pass is not counted
        assert all(len(t["prefill"]) == 4 and len(t["decode"]) == 12 for t in per_model.values())


def test_pruning_speed_reports_ratios_of_its_own_figures_beside_the_ideal():
    full = small_model(4)
    pruned = remove_layers(copy.deepcopy(full), [3])
    cfg = {"prompt_tokens": 6, "new_tokens": 4, "batch_size": 2, "repeats": 3}
    result = pruning_speed(full, pruned, cfg)
    assert (result["layers_full"], result["layers_pruned"]) == (4, 3)
    assert result["ideal_speedup"] == pytest.approx(ideal_speedup(full.config, pruned.config, context=6 + 4 // 2))
    for label in ("b1", "b2"):
        ratio = result["pruned"][f"decode_tokens_per_s_{label}"] / result["full"][f"decode_tokens_per_s_{label}"]
        assert result[f"decode_speedup_{label}"] == pytest.approx(ratio)
    assert result["decode_vs_ideal_b1"] == pytest.approx(result["decode_speedup_b1"] / result["ideal_speedup"])
    assert not {"decode_speedup", "decode_speedup_batched", "decode_vs_ideal"} & set(result)  # one key scheme: _b<N>


def test_speed_params_are_checked_by_name():
    with pytest.raises(PrunetuneError, match="speed.repeats"):
        pruning_speed(None, None, {"prompt_tokens": 8, "new_tokens": 2, "batch_size": 2, "repeats": 0})


def test_speed_stage_bad_input_gets_one_line(tmp_path):
    stage = Path(__file__).resolve().parents[1] / "stages/speed.py"
    (tmp_path / "params.yaml").write_text("speed: {prompt_tokens: 8, new_tokens: 2, batch_size: 2, repeats: 1}\n")
    for args, message in (
        ([], "error: usage: python"),
        (stage_argv("speed@base", "python")[2:], "error: models/base: models/base is not a Hugging Face model"),
    ):
        result = subprocess.run([sys.executable, str(stage), *args], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-500:]
