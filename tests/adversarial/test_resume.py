"""`finetune --resume` trusts nothing it reads back: each epoch's `training_state.pt` has its
sha256 beside it, and a state whose bytes or contents are not what this run wrote is refused with
one line and exit 4 (ModelFileError), never loaded silently and never exit 70.

The cases damage the last epoch's state of an interrupted run: its bytes (a flipped byte, a
truncation, a missing or foreign hash), or its contents re-saved with a matching hash (a step
past the budget or negative, non-finite or misshapen weights, an optimizer state that does not
fit), so the content checks are what refuses them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from bertc.compiler.core.errors import ModelFileError
from bertc.compiler.training.finetune import FinetuneOptions, checkpoint_dir_for, finetune_model
from bertc.compiler.training.loop import HASH_SUFFIX, STATE_FILE, write_state_hash

SETTINGS = dict(task="sst2", batch_size=8, learning_rate=3e-3, epochs=3, log_every=5, threads=1)
LAST_EPOCH = "epoch-2"


class Interrupted(Exception):
    pass


def stop_after_epoch_2(message: str) -> None:
    if message.startswith("checkpoint epoch 2 "):
        raise Interrupted


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, tiny_encoder: Path, glue_data_dir: Path) -> Path:
    """The checkpoints of a 15-step run stopped after epoch 2 (step 10): read only, copy first."""
    out = tmp_path_factory.mktemp("resume") / "run"
    options = FinetuneOptions(data_dir=glue_data_dir, **SETTINGS)
    with pytest.raises(Interrupted):
        finetune_model(str(tiny_encoder), out, options, stop_after_epoch_2)
    return checkpoint_dir_for(out)


def resume(source: Path, out: Path, glue_data_dir: Path):
    options = FinetuneOptions(data_dir=glue_data_dir, resume=True, **SETTINGS)
    return finetune_model(str(source), out, options)


# ---- damaged bytes: the hash check refuses them before torch reads anything


def flip_a_byte(state: Path) -> None:
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x01
    state.write_bytes(bytes(data))


def truncate(state: Path) -> None:
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def drop_the_hash(state: Path) -> None:
    state.with_name(state.name + HASH_SUFFIX).unlink()


def hash_of_another_file(state: Path) -> None:
    other = state.parent.parent / "epoch-1" / STATE_FILE
    shutil.copy(
        other.with_name(other.name + HASH_SUFFIX), state.with_name(state.name + HASH_SUFFIX)
    )


def garbage_hash(state: Path) -> None:
    state.with_name(state.name + HASH_SUFFIX).write_text("not a hash\n")


BYTE_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped byte": (flip_a_byte, "does not match its sha256"),
    "truncated": (truncate, "does not match its sha256"),
    "missing hash": (drop_the_hash, f"no {STATE_FILE}{HASH_SUFFIX} beside it"),
    "hash of another file": (hash_of_another_file, "does not match its sha256"),
    "malformed hash": (garbage_hash, "does not hold a sha256"),
}


# ---- damaged contents, re-saved with a matching hash: the state checks refuse them


def edited(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(state: Path) -> None:
        contents = torch.load(state, weights_only=True)
        edit(contents)
        torch.save(contents, state)
        write_state_hash(state)

    return damage


def first_weight(contents: dict) -> str:
    return next(name for name, value in contents["model"].items() if value.is_floating_point())


def set_entry(key: str, value) -> Callable[[dict], None]:
    return lambda contents: contents.__setitem__(key, value)


def fill_weight(value: float) -> Callable[[dict], None]:
    return lambda contents: contents["model"][first_weight(contents)].view(-1).__setitem__(0, value)


def reshape_weight(contents: dict) -> None:
    name = first_weight(contents)
    contents["model"][name] = torch.zeros(3, 5)


def drop_weight(contents: dict) -> None:
    del contents["model"][first_weight(contents)]


def nan_moment(contents: dict) -> None:
    entry = next(iter(contents["optimizer"]["state"].values()))
    entry["exp_avg_sq"].view(-1)[0] = float("nan")


def misshapen_moment(contents: dict) -> None:
    entry = next(iter(contents["optimizer"]["state"].values()))
    entry["exp_avg"] = torch.zeros(7)


def schedule_elsewhere(contents: dict) -> None:
    contents["scheduler"]["last_epoch"] = 3


def first_moments(contents: dict) -> dict:
    return next(iter(contents["optimizer"]["state"].values()))


def moment_entry(key: str, value) -> Callable[[dict], None]:
    return lambda contents: first_moments(contents).__setitem__(key, value)


def negative_second_moment(contents: dict) -> None:
    first_moments(contents)["exp_avg_sq"].view(-1)[0] = -1.0


def infinite_first_moment(contents: dict) -> None:
    first_moments(contents)["exp_avg"].view(-1)[0] = float("inf")


def group_entry(key: str, value) -> Callable[[dict], None]:
    return lambda contents: contents["optimizer"]["param_groups"][0].__setitem__(key, value)


def schedule_entry(key: str, value) -> Callable[[dict], None]:
    return lambda contents: contents["scheduler"].__setitem__(key, value)


def short_losses(contents: dict) -> None:
    contents["losses"] = contents["losses"][:-1]


CONTENT_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "step past the budget": (edited(set_entry("step", 16)), "step 16 is outside this run's 0..15"),
    "negative step": (edited(set_entry("step", -1)), "step -1 is outside"),
    "step not an integer": (edited(set_entry("step", 2.5)), "step 2.5 is outside"),
    "step not at the epoch's end": (edited(set_entry("step", 9)), "is not the end of epoch 2"),
    "NaN weight": (edited(fill_weight(float("nan"))), "holds NaN or infinite values"),
    "infinite weight": (edited(fill_weight(float("inf"))), "holds NaN or infinite values"),
    "wrong weight shape": (edited(reshape_weight), r"has shape \[3, 5\], the model \["),
    "missing weight": (edited(drop_weight), "are not this model's"),
    "NaN optimizer moment": (edited(nan_moment), "exp_avg_sq of parameter"),
    "misshapen optimizer moment": (edited(misshapen_moment), "does not fit the model"),
    "schedule at another step": (edited(schedule_elsewhere), "schedule is not at step 10"),
    # the optimizer's per-parameter state: finite, non-negative second moment, step == 10
    "negative exp_avg_sq": (edited(negative_second_moment), "exp_avg_sq of parameter .* negative"),
    "infinite exp_avg": (edited(infinite_first_moment), "exp_avg of parameter .* NaN or infinite"),
    "negative optimizer step": (
        edited(moment_entry("step", torch.tensor(-3.0))),
        "step count of parameter .* is not step 10",
    ),
    "optimizer step behind": (
        edited(moment_entry("step", torch.tensor(4.0))),
        "step count of parameter .* is not step 10",
    ),
    "NaN optimizer step": (
        edited(moment_entry("step", torch.tensor(float("nan")))),
        "step count of parameter .* is not step 10",
    ),
    "optimizer step not a tensor": (
        edited(moment_entry("step", "10")),
        "step count of parameter .* is not step 10",
    ),
    "optimizer step of two numbers": (
        edited(moment_entry("step", torch.tensor([10.0, 10.0]))),
        "step count of parameter .* is not step 10",
    ),
    "moment of another dtype": (
        edited(
            lambda c: first_moments(c).__setitem__("exp_avg", first_moments(c)["exp_avg"].double())
        ),
        "exp_avg of parameter .* does not fit",
    ),
    "extra optimizer state": (
        edited(moment_entry("max_exp_avg_sq", torch.zeros(1))),
        "optimizer state of parameter .* is malformed",
    ),
    # the optimizer's groups: this run's hyperparameters, a finite learning rate
    "negative group lr": (edited(group_entry("lr", -1.0)), "group 0 has no finite learning"),
    "NaN group lr": (edited(group_entry("lr", float("nan"))), "group 0 has no finite learning"),
    "other betas": (edited(group_entry("betas", (float("nan"), 0.999))), "another betas"),
    "other eps": (edited(group_entry("eps", -1.0)), "another eps"),
    "amsgrad switched on": (edited(group_entry("amsgrad", True)), "another amsgrad"),
    "extra group key": (edited(group_entry("foo", 1)), "parameter groups are not this model's"),
    # the schedule: this run's fields, types, lengths and finite values
    "NaN base rate": (
        edited(schedule_entry("base_lrs", [float("nan")])),
        "base rates are not this run's",
    ),
    "one base rate short": (
        edited(schedule_entry("base_lrs", [3e-3])),
        "base rates are not this run's",
    ),
    "other base rates": (
        edited(schedule_entry("base_lrs", [1.0, 1.0])),
        "base rates are not this run's",
    ),
    "schedule step not an integer": (
        edited(schedule_entry("last_epoch", 10.0)),
        "schedule is not at step 10",
    ),
    "schedule step count off": (
        edited(schedule_entry("_step_count", -3)),
        "schedule's step count is not 11",
    ),
    "NaN last rate": (
        edited(schedule_entry("_last_lr", [float("nan"), 1e-3])),
        "last rates are not 2 finite numbers",
    ),
    "last rates too long": (
        edited(schedule_entry("_last_lr", [1e-3, 1e-3, 1e-3])),
        "last rates are not 2 finite numbers",
    ),
    "schedule lambdas replaced": (
        edited(schedule_entry("lr_lambdas", [{"x": 1}, {}])),
        "schedule's lr_lambdas is not this run's",
    ),
    "schedule flag not a bool": (
        edited(schedule_entry("_is_initial", "no")),
        "schedule's _is_initial is not this run's",
    ),
    "schedule field missing": (
        edited(lambda c: c["scheduler"].pop("base_lrs")),
        "schedule is malformed",
    ),
    "losses of another length": (edited(short_losses), "losses are not 10 finite numbers"),
    "no optimizer": (edited(lambda c: c.pop("optimizer")), "it lacks optimizer"),
    "no fingerprint": (edited(lambda c: c.clear()), "not a bertc training checkpoint"),
    "weights not a state dict": (
        edited(lambda c: c.__setitem__("model", [1, 2])),
        "weights are not a state",
    ),
}

CASES = {**BYTE_DAMAGE, **CONTENT_DAMAGE}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_checkpoint_is_refused_with_exit_4(
    case: str, interrupted: Path, tmp_path: Path, tiny_encoder: Path, glue_data_dir: Path
) -> None:
    damage, message = CASES[case]
    out = tmp_path / "run"
    checkpoints = Path(shutil.copytree(interrupted, checkpoint_dir_for(out)))
    state = checkpoints / LAST_EPOCH / STATE_FILE
    damage(state)
    before = state.read_bytes()
    with pytest.raises(ModelFileError, match=message) as refused:
        resume(tiny_encoder, out, glue_data_dir)
    assert refused.value.exit_code == 4
    assert "\n" not in str(refused.value)
    assert not out.exists()
    assert state.read_bytes() == before  # the evidence is left as it was


def test_an_intact_checkpoint_resumes(
    interrupted: Path, tmp_path: Path, tiny_encoder: Path, glue_data_dir: Path
) -> None:
    """The control: the very copy the cases damage resumes at step 10 and finishes."""
    out = tmp_path / "run"
    shutil.copytree(interrupted, checkpoint_dir_for(out))
    result = resume(tiny_encoder, out, glue_data_dir)
    assert result.report["training"]["resumed_from_step"] == 10
    assert result.steps == 15


def test_every_checkpoint_written_has_its_hash(interrupted: Path) -> None:
    for epoch in ("epoch-1", LAST_EPOCH):
        state = interrupted / epoch / STATE_FILE
        recorded = (interrupted / epoch / f"{STATE_FILE}{HASH_SUFFIX}").read_text().split()
        import hashlib

        assert recorded == [hashlib.sha256(state.read_bytes()).hexdigest(), STATE_FILE]


def test_the_cli_says_one_line_and_exits_4(
    interrupted: Path, tmp_path: Path, tiny_encoder: Path, glue_data_dir: Path, bertc_cli
) -> None:
    out = tmp_path / "run"
    checkpoints = Path(shutil.copytree(interrupted, checkpoint_dir_for(out)))
    flip_a_byte(checkpoints / LAST_EPOCH / STATE_FILE)
    options = FinetuneOptions(data_dir=glue_data_dir, **SETTINGS)
    result = bertc_cli(
        "finetune", tiny_encoder, "--task", "sst2", "--data-dir", glue_data_dir, "--out", out,
        "--batch-size", options.batch_size, "--learning-rate", options.learning_rate,
        "--epochs", options.epochs, "--threads", 1, "--resume",
    )  # fmt: skip
    assert result.returncode == ModelFileError.exit_code == 4, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "does not match its sha256" in result.stderr
    assert "Traceback" not in result.stderr
