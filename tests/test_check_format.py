"""The check form: which steps it checks, how a check writes and reads its value, where it lives."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ttc_serve.app.settings import EMBEDDED_DIR
from ttc_serve.models.check_format import CheckFormat
from ttc_serve.models.embedded import task
from ttc_serve.router.strategies.base import Candidate
from ttc_serve.router.strategies.check_repair import CheckAndRepair
from ttc_serve.training import checker
from ttc_serve.training.tokenizer import save_tokenizer


def test_an_arithmetic_step_is_checkable_and_the_answer_line_is_not() -> None:
    form = CheckFormat()
    step = form.parse_step("-84+15=-69")
    assert step is not None and (step.expression, step.written) == ("-84+15", -69)
    assert step.repaired(-70) == "-84+15=-70"
    assert form.parse_step("answer: 3") is None
    assert form.prompt("114+38") == "check 114+38="


@given(st.integers(-10**9, 10**9), st.sampled_from(["reversed", "as_written"]))
def test_a_written_check_reads_back_to_its_value(value: int, digits: str) -> None:
    form = CheckFormat(digits=digits)  # type: ignore[arg-type]
    assert form.read(form.write(value) + "\n") == value


def test_reversed_checks_write_the_units_first() -> None:
    assert CheckFormat().write(152) == "251" and CheckFormat().write(-229) == "-922"
    for text in ("", "-", "12a", "ok", "1 2"):
        assert CheckFormat().read(text) is None


@pytest.mark.parametrize("bad", [{"template": "check="}, {"digits": "octal"},
                                 {"step_pattern": r"^(?P<expression>.+)=(\d+)$"}])
def test_a_malformed_check_form_is_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        CheckFormat(**bad)  # type: ignore[arg-type]


def test_the_form_travels_in_the_checkpoints_tokenizer_config(tmp_path: Path) -> None:
    form = CheckFormat(template="verify {expression} =", digits="as_written")
    save_tokenizer(tmp_path, form.to_tokenizer_config())
    assert CheckFormat.from_model_dir(tmp_path) == form
    assert CheckFormat.from_model_dir(EMBEDDED_DIR / "generator-large") is None
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["check_digits"] = "octal"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="check_digits"):
        CheckFormat.from_model_dir(tmp_path)


def test_the_shipped_generator_names_the_form_it_was_trained_on() -> None:
    assert CheckFormat.from_model_dir(EMBEDDED_DIR / "generator-small") == checker.CHECK_FORM


def _attempt(text: str) -> Candidate:
    return Candidate(text=text, finish_reason="stop", tokens=len(text), answer=None,
                     steps=task.split_steps(text))


def _repairer(said: dict[str, int | None]) -> CheckAndRepair:
    return CheckAndRepair(None, CheckFormat(), dict(said))  # type: ignore[arg-type]  # no backend call


def test_an_attempt_is_cut_at_its_first_step_whose_check_disagrees() -> None:
    attempt = _attempt("84-15=69\n69+30=98\nanswer: 98\n")
    failure = _repairer({"84-15": 69, "69+30": 99}).first_failure(attempt)
    assert failure is not None and failure.index == 1
    assert failure.prefix(attempt) == "84-15=69\n69+30=99\n"  # checked steps kept, the slip fixed


def test_a_check_that_states_no_number_flags_nothing() -> None:
    attempt = _attempt("84-15=69\n69+30=98\nanswer: 98\n")
    assert _repairer({"84-15": None, "69+30": 98}).first_failure(attempt) is None


def test_each_expression_is_checked_once_per_request() -> None:
    repairer = _repairer({"84-15": 69})
    attempts = [_attempt("84-15=69\n69+30=98\nanswer: 98\n"), _attempt("84-15=79\n79+30=109\n")]
    assert repairer.unchecked(attempts) == ["69+30", "79+30"]
