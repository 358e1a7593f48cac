import copy

import numpy as np
import pytest
from conftest import chat_examples

from prunetune import layersweep
from prunetune.chat import tokenize_chat
from prunetune.config import PrunetuneError
from prunetune.generation import completion_nll
from prunetune.params import EvalParams, PruneParams
from prunetune.pruning import measure_layers, remove_layers

PRUNE = {"method": "val_sweep", "calibration_samples": 4, "calibration_max_tokens": 32, "calibration_batch_size": 2}
PRUNE |= {"seed": 0, "sweep_depths": [1, 2], "sweep_methods": ["tail", "block_influence", "angular"]}
EVAL = {
    "batch_size": 4,
    "max_new_tokens": {"summarization": 4, "title_generation": 4, "tag_extraction": 4, "type_classification": 4},
    "bertscore_model": "minilm",
    "bootstrap_resamples": 200,
    "seed": 0,
}


def test_log_ppl_is_token_weighted():
    scores = np.array([[3.0, 1.0], [6.0, 4.0]])  # (NLL sum, tokens) per answer
    assert layersweep.log_ppl(scores, np.array([0, 1])) == pytest.approx(9 / 5)
    assert layersweep.log_ppl(scores, np.array([1, 1])) == pytest.approx(12 / 8)


def row(method, depth, pooled, low=0.1):
    return {
        "method": method,
        "n_layers": depth,
        "removed_layers": [0],
        "val": {"pooled": {"log_ppl": pooled, "gap": pooled - 1, "gap_ci": [low, 1.0], "p_value": 0.01}},
    }


def test_choice_rule_takes_the_deepest_depth_then_the_lowest_val_loss():
    rows = [row("tail", 1, 1.1), row("angular", 1, 1.05), row("tail", 4, 2.0), row("angular", 4, 1.5, low=-0.1)]
    chosen = layersweep.choose(rows)
    assert (chosen["method"], chosen["n_layers"]) == ("angular", 4)
    assert chosen["cost_exceeds_noise"] is False  # its interval [-0.1, 1.0] covers zero


def test_sweep_scores_every_candidate_against_a_direct_computation(tiny_model):
    model, tokenizer = tiny_model
    val = chat_examples(4, max_content_words=20)
    cfg, eval_cfg = PruneParams.parse(PRUNE), EvalParams.parse(EVAL)
    texts = [e["messages"][1]["content"] for e in val[::4]]
    stats = measure_layers(model, tokenizer, texts, 32, 2)
    sweep = layersweep.run_sweep(model, tokenizer, stats, val, cfg, eval_cfg, "26 Jul 2024")

    assert [(r["method"], r["n_layers"]) for r in sweep["candidates"]] == [
        (m, d) for d in (1, 2) for m in ("tail", "block_influence", "angular")
    ]
    assert sweep["candidates"][0]["removed_layers"] == [3]  # tail x 1 of a 4-layer model: the last layer
    rows = [tokenize_chat(tokenizer, e["messages"], "26 Jul 2024") for e in val]
    full = np.asarray(completion_nll(model, rows, 4))
    for candidate in sweep["candidates"]:
        pruned = np.asarray(completion_nll(remove_layers(copy.deepcopy(model), candidate["removed_layers"]), rows, 4))
        expected = pruned[:, 0].sum() / pruned[:, 1].sum() - full[:, 0].sum() / full[:, 1].sum()
        pooled = candidate["val"]["pooled"]
        assert pooled["gap"] == pytest.approx(expected, rel=1e-6)
        assert pooled["gap_ci"][0] <= pooled["gap"] <= pooled["gap_ci"][1]
        assert set(candidate["val"]) == {
            "pooled",
            "summarization",
            "title_generation",
            "tag_extraction",
            "type_classification",
        }
    assert sweep["chosen"]["n_layers"] == 2 and sweep["val_articles"] == 4
    assert model.config.num_hidden_layers == 4 and len(model.model.layers) == 4  # the base is left whole
    report = layersweep.report_markdown(sweep)
    assert report.count("(chosen)") == 1 and "| 2 | " in report


def test_sweep_depths_must_leave_a_layer():
    with pytest.raises(PrunetuneError, match=r"prune.sweep_depths must stay below the model's 4 layers, got \[1, 4\]"):
        PruneParams.parse(PRUNE | {"sweep_depths": [1, 4]}).check_sweep(4)


def test_unknown_sweep_criterion_is_named():
    with pytest.raises(PrunetuneError, match=r"prune.sweep_methods items must be among tail, block_influence, angular"):
        PruneParams.parse(PRUNE | {"sweep_methods": ["last"]})
