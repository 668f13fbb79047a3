"""Tokenizer coverage at validation: the share of a data sample that maps to <unk>."""

from __future__ import annotations

import json

import pytest

from workflow.launch import coverage
from workflow.spec import JobSpec

LATIN = "red big dog small cat old horse fast bird".split()
FOREIGN = ("中文", "Привет", "ελληνικά")


def sentence(i: int, foreign: bool) -> str:
    """Twenty words: nineteen the demo tokenizer knows, and one in a script it lacks when ``foreign``."""
    words = [LATIN[(i + k) % len(LATIN)] for k in range(19)]
    return " ".join(words + [FOREIGN[i % len(FOREIGN)] if foreign else "dog"])


def write_data(tmp_path, task: str, foreign=range(40), n: int = 40) -> str:
    """A data file of ``n`` records; those at the indices ``foreign`` have one foreign word in twenty."""
    records = []
    for i in range(n):
        text = sentence(i, i in foreign)
        records.append({"input": text, "target": 1.0} if task == "classifier" else {"prompt": text, "completion": "rouge"})
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"train": records, "eval": records[:4]}, ensure_ascii=False))
    return str(path)


def job(data_name: str, task: str = "seq2seq", **options) -> JobSpec:
    return JobSpec(task=task, model_init_name="tiny-t5", data_name=data_name, tokenizer_coverage=options)


@pytest.mark.parametrize("task", ["classifier", "seq2seq"])
def test_five_percent_foreign_words_get_a_warning_with_share_and_examples(isolated, tmp_path, task):
    warnings, problems = coverage.check_spec(job(write_data(tmp_path, task), task), "job.yaml")
    assert problems == []
    train = [w for w in warnings if "data.json:train" in w]
    assert len(train) == 1, warnings
    if task == "classifier":
        assert "5.0% of sampled words" in train[0] and "(40 of 800;" in train[0], train[0]
    for word in FOREIGN:
        assert repr(word) in train[0], train[0]


def test_clean_data_gets_no_warning(isolated, tmp_path):
    assert coverage.check_spec(job(write_data(tmp_path, "classifier", foreign=()), "classifier"), "job.yaml") == ([], [])


def test_the_error_option_makes_it_a_problem(isolated, tmp_path):
    spec = job(write_data(tmp_path, "classifier"), "classifier", error=True)
    warnings, problems = coverage.check_spec(spec, "job.yaml")
    assert warnings == [] and problems, problems
    assert problems[0].key == "tokenizer_coverage.max_unk" and problems[0].file == "job.yaml"
    assert "5.0%" in problems[0].given and "at most 1%" in problems[0].expected


def test_below_the_threshold_and_outside_the_sample_pass(isolated, tmp_path):
    data_name = write_data(tmp_path, "classifier")
    assert coverage.check_spec(job(data_name, "classifier", max_unk=0.08), "job.yaml") == ([], [])
    late = write_data(tmp_path, "classifier", foreign=(30,))  # past the first 10 records
    assert coverage.check_spec(job(late, "classifier", max_unk=0.0, sample=10), "job.yaml") == ([], [])
    assert coverage.check_spec(job(late, "classifier", max_unk=0.0, sample=0), "job.yaml") == ([], [])
    assert coverage.check_spec(job(late, "classifier", max_unk=0.0), "job.yaml")[0]


def test_sentencepiece_model_alone_is_read(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentence(i, False) for i in range(50)) + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "spiece"), vocab_size=40,
                                   hard_vocab_limit=False, character_coverage=1.0, minloglevel=2, num_threads=1)
    encode = coverage.load_encoder(tmp_path)
    found = coverage.measure(encode, [sentence(0, True), sentence(1, False)], "x.json:train")
    assert (found.words, found.unk_words, found.examples) == (40, 1, ("中文",))
    assert found.unk_chars == 2 and found.chars > 100


def test_a_folder_without_tokenizer_files_is_not_checked(tmp_path):
    assert coverage.load_encoder(tmp_path) is None
