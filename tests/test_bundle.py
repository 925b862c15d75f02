"""Fitted steps, sparse text features, the linear trainer and the model bundle.

Train-only fitting, scikit-learn parity of tfidf and the linear model, safe loading, clear errors
for what is not a bundle, scoring raw rows, bounded metadata, and where the plan puts fitted steps.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skitflow
from skitflow.errors import RecipeError, StepFailed
from skitflow.plan.planner import build_plan
from skitflow.recipe.loader import load_recipe_text
from skitflow.steps.base import RunContext
from skitflow.steps.bundle import FORMAT_VERSION, Chain, ChainStep, load_bundle, train_bundle
from skitflow.steps.registry import default_registry
from skitflow.steps.split import TrainTest
from skitflow.steps.text import Hashing, Tfidf
from skitflow.steps.trainers import Linear, XGBoost
from skitflow.steps.transforms import Fillna, LabelEncode, Lowercase, OneHot, Standardize
from skitflow.util.metadata import MAX_METADATA_BYTES, bounded

INTENT_WORDS = {
    "billing": ["invoice", "refund", "charge", "bill"],
    "cancel": ["cancel", "terminate", "quit", "close"],
    "tech": ["error", "crash", "login", "slow"],
}


def utterances(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(sorted(INTENT_WORDS), size=rows)
    filler = ["please", "help", "my", "the", "I", "want", "to", "today", "um"]
    texts = [" ".join([*rng.choice(INTENT_WORDS[label], size=2), *rng.choice(filler, size=4)]).upper()
             if i % 3 == 0 else " ".join([*rng.choice(INTENT_WORDS[label], size=2), *rng.choice(filler, size=4)])
             for i, label in enumerate(labels)]
    return pd.DataFrame({"call_id": np.arange(rows), "utterance": texts, "intent": labels,
                         "duration": rng.gamma(2.0, 30.0, size=rows)})


def ctx(lines: list[str] | None = None) -> RunContext:
    return RunContext("intents", "run-1", "2024-05-01", ".", log=(lines.append if lines is not None else None))


def chain(*items: tuple[object, dict, str]) -> Chain:
    return Chain([ChainStep(step, step.Settings(**settings), stage)  # type: ignore[attr-defined]
                  for step, settings, stage in items])


def text_chain() -> Chain:
    return chain((Lowercase(), {"columns": ["utterance"]}, "prepare"),
                 (Standardize(), {"columns": ["duration"]}, "model"),
                 (Tfidf(), {"column": "utterance", "ngram_range": (1, 2)}, "model"))


def test_standardize_state_is_the_train_mean_not_the_full_data_mean(tmp_path: Path) -> None:
    frame = utterances()
    frame.loc[frame.index[-100:], "duration"] += 500.0  # the last rows, mostly in test, shift the mean
    train, test = TrainTest().run(frame, TrainTest.Settings(test_size=0.2, shuffle=False))
    path = str(tmp_path / "model.zip")
    train_bundle(train, text_chain(), Linear(), Linear.Settings(target="intent"), path, ctx())
    state = load_bundle(path).chain.steps[1].state
    assert state is not None
    assert state["columns"]["duration"]["mean"] == pytest.approx(train["duration"].mean())
    assert abs(state["columns"]["duration"]["mean"] - frame["duration"].mean()) > 50


def test_tfidf_equals_scikit_learn_fitted_on_the_same_rows() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    frame = utterances()
    settings = Tfidf.Settings(column="utterance", analyzer="char_wb", ngram_range=(2, 4), min_df=2,
                              sublinear_tf=True, max_features=300)
    state = Tfidf().fit(frame.head(400), settings)
    assert json.loads(json.dumps(state)) == state  # plain JSON
    matrix, names = Tfidf().features(state, frame.tail(200), settings)
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True,
                                max_features=300).fit(frame.head(400)["utterance"])
    expected = reference.transform(frame.tail(200)["utterance"])
    assert matrix.shape == expected.shape and abs(matrix - expected).max() == 0
    assert names[:3] == [f"utterance:{t}" for t in reference.get_feature_names_out()[:3]]


def test_hashing_is_stateless_and_sparse() -> None:
    settings = Hashing.Settings(column="utterance", n_features=1024)
    assert Hashing().fit(utterances(), settings) == {}
    matrix, names = Hashing().features({}, utterances(50), settings)
    assert matrix.shape == (50, 1024) and matrix.format == "csr" and names == []


@pytest.mark.parametrize("kind", ["multiclass", "binary", "ridge"])
def test_linear_scores_equal_scikit_learn(tmp_path: Path, kind: str) -> None:
    from sklearn.linear_model import LogisticRegression, Ridge

    frame = utterances()
    settings: dict = {"target": "intent"}
    if kind == "binary":
        frame["intent"] = np.where(frame["intent"] == "billing", "billing", "other")
    if kind == "ridge":
        frame["intent"] = frame["duration"] * 2 + frame["utterance"].str.contains("refund") * 10
        settings["task"] = "regression"
    path = str(tmp_path / "model.zip")
    steps = chain((Tfidf(), {"column": "utterance"}, "model"))
    meta = train_bundle(frame, steps, Linear(), Linear.Settings(**settings, features=["duration"]), path, ctx())
    bundle = skitflow.load_model(path)
    x = load_bundle(path).rows(frame, raw=False)
    import scipy.sparse as sp

    design = sp.hstack([sp.csr_matrix(frame[["duration"]].to_numpy()), x.blocks[0].matrix], format="csr")
    if kind == "ridge":
        reference = Ridge(max_iter=1000, random_state=42).fit(design, frame["intent"])
        assert np.allclose(bundle.scores(frame), reference.predict(design))
        assert meta["task"] == "regression" and meta["classes"] is None
        return
    reference = LogisticRegression(max_iter=1000, random_state=42).fit(design, frame["intent"])
    assert np.allclose(bundle.predict_proba(frame).to_numpy(), reference.predict_proba(design), atol=1e-9)
    assert bundle.predict(frame).tolist() == reference.predict(design).tolist()
    assert meta["classes"] == reference.classes_.tolist()


def test_bundle_scores_raw_rows_through_the_whole_preprocessing(tmp_path: Path) -> None:
    frame = utterances().drop(columns=["call_id"])  # an identifier would be a (numeric) feature
    path = str(tmp_path / "model.zip")
    prepared = frame.assign(utterance=frame["utterance"].str.lower())  # what the prepare task made
    meta = train_bundle(prepared, text_chain(), Linear(), Linear.Settings(target="intent"), path, ctx())
    with zipfile.ZipFile(path) as archive:  # JSON and the model's own format: nothing to unpickle
        assert sorted(archive.namelist()) == ["bundle.json", "model.json"]
        manifest = json.loads(archive.read("bundle.json"))
    assert manifest["format_version"] == FORMAT_VERSION
    assert [s["step"] for s in manifest["steps"]] == ["lowercase", "standardize", "tfidf"]
    assert meta["versions"]["scikit-learn"] and meta["train_rows"] == 600 and meta["trainer"] == "linear"
    assert set(meta["columns_in"]) == {"utterance", "duration"}
    bundle = skitflow.load_model(path)
    raw = frame.drop(columns=["intent"])  # new data has no target
    assert bundle.predict(raw).tolist() == bundle.predict(prepared, raw=False).tolist()
    assert (bundle.predict(raw) == frame["intent"]).mean() > 0.95
    scored = bundle.predictions(raw, output="guess")
    assert list(scored.columns[-5:]) == ["guess", "guess_score", "score_billing", "score_cancel", "score_tech"]
    assert np.allclose(scored[["score_billing", "score_cancel", "score_tech"]].sum(axis=1), 1.0)
    assert (scored["guess_score"] >= 1 / 3).all()


def test_xgboost_trains_on_sparse_text_features(tmp_path: Path) -> None:
    frame = utterances()
    path = str(tmp_path / "model.zip")
    settings = XGBoost.Settings(target="intent", features=["duration"], params={"n_estimators": 20})
    meta = train_bundle(frame, chain((Tfidf(), {"column": "utterance"}, "model")), XGBoost(), settings, path, ctx())
    assert meta["features_out"]["blocks"][0]["name"] == "tfidf:utterance"
    bundle = skitflow.load_model(path)
    assert (bundle.predict(frame) == frame["intent"]).mean() > 0.95
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["bundle.json", "model.ubj"]


def test_fitted_encoders_keep_the_train_categories() -> None:
    train = pd.DataFrame({"channel": ["chat", "email", "chat"], "n": [1.0, None, 3.0], "c": ["a", "b", "b"]})
    test = pd.DataFrame({"channel": ["phone", "email"], "n": [None, 5.0], "c": ["z", "a"]})
    one_hot, settings = OneHot(), OneHot.Settings(columns=["channel"])
    applied = one_hot.apply(one_hot.fit(train, settings), test, settings)
    assert list(applied.columns) == ["n", "c", "channel_chat", "channel_email"]
    assert applied[["channel_chat", "channel_email"]].to_numpy().tolist() == [[0, 0], [0, 1]]
    encode, codes = LabelEncode(), LabelEncode.Settings(columns=["c"])
    assert encode.apply(encode.fit(train, codes), test, codes)["c"].tolist() == [-1, 0]
    fill, median = Fillna(), Fillna.Settings(strategy="median", columns=["n"])
    assert fill.fit(train, median) == {"values": {"n": 2.0}}
    assert fill.apply(fill.fit(train, median), test, median)["n"].tolist() == [2.0, 5.0]
    assert fill.is_fitted(median) and not fill.is_fitted(Fillna.Settings(value=0))


def test_high_cardinality_categorical_is_a_clear_error(tmp_path: Path) -> None:
    frame = utterances(3000)
    frame["transcript"] = [f"call {i} {t}" for i, t in enumerate(frame["utterance"])]
    with pytest.raises(StepFailed, match="`transcript` has 3,000 distinct values") as caught:
        XGBoost().run(frame, XGBoost.Settings(target="intent", features=["transcript"],
                                              categorical=["transcript"]), str(tmp_path / "m"), ctx())
    assert "tfidf" in (caught.value.problems[0].hint or "")


def test_metadata_is_bounded_whatever_the_data() -> None:
    huge = {"categorical": {"transcript": [f"utterance number {i}" for i in range(20000)]},
            "columns": [f"c{i}" for i in range(5000)], "rows": 20000, "note": "x" * 100000}
    assert len(json.dumps(huge)) > 249_000
    small = bounded(huge)
    assert len(json.dumps(small, separators=(",", ":"))) <= MAX_METADATA_BYTES
    assert small["rows"] == 20000 and small["metadata_truncated"] is True
    assert bounded({"rows": 3}) == {"rows": 3}


def _bundle_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "model.zip"
    train_bundle(utterances(200), text_chain(), Linear(), Linear.Settings(target="intent"), str(path), ctx())
    return path.read_bytes()


def _rewrite(data: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w") as new:
        for name in old.namelist():
            content = old.read(name)
            if name == "bundle.json":
                manifest = json.loads(content)
                change(manifest)
                content = json.dumps(manifest).encode()
            new.writestr(name, content)
    return out.getvalue()


def test_what_is_not_a_bundle_gets_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "text.csv").write_text("a,b\n1,2\n")
    with pytest.raises(StepFailed, match="not a skitflow model bundle"):
        load_bundle(str(tmp_path / "text.csv"))
    (tmp_path / "old.json").write_text('{"learner": {}}')
    with pytest.raises(StepFailed, match="bare JSON model"):
        load_bundle(str(tmp_path / "old.json"))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(StepFailed, match="no bundle.json"):
        load_bundle(str(tmp_path / "other.zip"))
    with pytest.raises(StepFailed, match="cannot read model"):
        load_bundle(str(tmp_path / "missing.zip"))


def test_a_bundle_from_a_newer_skitflow_names_its_writer(tmp_path: Path) -> None:
    def newer(manifest: dict) -> None:
        manifest["format_version"] = FORMAT_VERSION + 1
        manifest["written_by"] = "skitflow 9.0.0"

    (tmp_path / "newer.zip").write_bytes(_rewrite(_bundle_bytes(tmp_path), newer))
    with pytest.raises(StepFailed, match=r"written by skitflow 9\.0\.0 \(bundle format 2\)") as caught:
        load_bundle(str(tmp_path / "newer.zip"))
    assert "upgrade skitflow" in (caught.value.problems[0].hint or "")


def test_a_bundle_naming_an_unknown_step_or_library_is_refused(tmp_path: Path) -> None:
    data = _bundle_bytes(tmp_path)
    (tmp_path / "step.zip").write_bytes(_rewrite(data, lambda m: m["steps"][0].update(step="evil")))
    with pytest.raises(StepFailed, match="transform step `evil`, which is not installed"):
        load_bundle(str(tmp_path / "step.zip"))
    (tmp_path / "lib.zip").write_bytes(_rewrite(data, lambda m: m["model"].update(library="pickle")))
    with pytest.raises(StepFailed, match="unknown model library 'pickle'"):
        load_bundle(str(tmp_path / "lib.zip"))


def test_rows_missing_columns_are_named_all_at_once(tmp_path: Path) -> None:
    (tmp_path / "model.zip").write_bytes(_bundle_bytes(tmp_path))
    bundle = skitflow.load_model(tmp_path / "model.zip")
    with pytest.raises(StepFailed, match="lack 2 column.*`utterance`, `duration`"):
        bundle.predict(pd.DataFrame({"call_id": [1]}))


def test_the_same_training_gives_the_same_bytes(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    assert _bundle_bytes(tmp_path / "1") == _bundle_bytes(tmp_path / "2")


# -- the plan --------------------------------------------------------------------------------

HEAD = """\
apiVersion: skitflow/v1
name: fitted
source:
  csv: {path: data.csv, columns: [call_id, utterance, intent, duration, channel]}
"""
MODEL = """\
split:
  train_test: {test_size: 0.2}
trainer:
  linear: {target: intent}
"""


def plan(text: str):  # type: ignore[no-untyped-def]
    return build_plan(load_recipe_text(text, "fitted.yaml"), default_registry())


def test_fitted_steps_move_after_the_split_in_the_users_order() -> None:
    result = plan(HEAD + """\
steps:
  - standardize: {columns: [duration]}
  - lowercase: {columns: [utterance]}
  - dropna: {columns: [intent]}
  - tfidf: {column: utterance}
  - one_hot: {columns: [channel]}
""" + MODEL)
    prepare, train = result.tasks[0], result.task("train-linear")
    assert [c.step for c in prepare.calls] == ["csv", "dropna"]  # dropna reads no moved column
    assert [(c.step, c.stage) for c in train.calls] == [
        ("dropna", "prepare"), ("standardize", "model"), ("lowercase", "model"), ("tfidf", "model"),
        ("one_hot", "model"), ("linear", None)]
    assert any("`dropna` (fitted.yaml:8:5) drops rows, so it runs before the split" in n for n in result.notes)
    assert any("fitted after the split, on the train rows" in n and "`tfidf`" in n for n in result.notes)


def test_a_row_filter_reading_a_changed_column_must_move() -> None:
    with pytest.raises(RecipeError) as caught:
        plan(HEAD + "steps:\n  - standardize: {columns: [duration]}\n  - filter_rows: {expr: 'duration > 0'}\n" + MODEL)
    problem = caught.value.problems[0]
    assert "`filter_rows` drops rows after `standardize`" in problem.message
    assert problem.hint == "move it before `standardize` (at fitted.yaml:6:5)"


def test_sparse_features_need_a_trainer_and_fitted_steps_without_a_split_fit_on_all_rows() -> None:
    with pytest.raises(RecipeError, match="only a trainer can use"):
        plan(HEAD + "steps:\n  - tfidf: {column: utterance}\n")
    result = plan(HEAD + "steps:\n  - standardize: {columns: [duration]}\n")
    assert result.notes == ("fitted steps fit on all rows (the recipe has no split): `standardize` (fitted.yaml:6:5)",)


def test_column_contracts_still_hold_after_placement() -> None:
    with pytest.raises(RecipeError) as caught:
        plan(HEAD + "steps:\n  - tfidf: {column: utterance}\n  - lowercase: {columns: [utterance]}\n" + MODEL)
    assert "removed by `tfidf`" in (caught.value.problems[0].hint or "")


def test_predict_section_scores_and_feeds_sinks() -> None:
    result = plan(HEAD + "steps:\n  - tfidf: {column: utterance}\n" + MODEL + """\
predict: {model: trained, output: guess}
sinks:
  - file: {path: out/scored.csv, format: csv}
    input: predictions
""")
    task = result.task("predict")
    assert task.component == "predict_trained" and set(task.inputs) == {"data", "model"}
    assert task.predict is not None and task.predict["output"] == "guess"
    assert result.task("file-predictions").inputs["data"][0].task == "predict"
    with pytest.raises(RecipeError, match="`model: trained` needs a `trainer:`"):
        plan(HEAD + "predict: {model: trained}\n")
    external = plan(HEAD + "predict: {model: s3://models/m.zip}\n")
    assert external.task("predict").component == "predict" and set(external.task("predict").inputs) == {"data"}


def test_word_and_char_ngrams_of_one_column(tmp_path: Path) -> None:
    frame = utterances()
    steps = chain((Tfidf(), {"column": "utterance", "keep": True}, "model"),
                  (Tfidf(), {"column": "utterance", "analyzer": "char_wb", "ngram_range": (2, 3),
                             "prefix": "chars"}, "model"))
    meta = train_bundle(frame, steps, Linear(), Linear.Settings(target="intent", features=["duration"]),
                        str(tmp_path / "m.zip"), ctx())
    assert [b["name"] for b in meta["features_out"]["blocks"]] == ["tfidf:utterance", "tfidf:chars"]
    clash = chain((Tfidf(), {"column": "utterance", "keep": True}, "model"),
                  (Tfidf(), {"column": "utterance"}, "model"))
    with pytest.raises(StepFailed, match="second sparse block named `tfidf:utterance`"):
        train_bundle(frame, clash, Linear(), Linear.Settings(target="intent"), str(tmp_path / "x.zip"), ctx())


def test_the_evaluator_compares_the_target_as_the_model_saw_it(tmp_path: Path) -> None:
    from skitflow.steps.evaluators import Classification

    frame = utterances()
    train, test = TrainTest().run(frame, TrainTest.Settings(stratify="intent"))
    steps = chain((LabelEncode(), {"columns": ["intent"]}, "model"), (Tfidf(), {"column": "utterance"}, "model"))
    path = str(tmp_path / "m.zip")
    meta = train_bundle(train, steps, Linear(), Linear.Settings(target="intent", features=["duration"]), path, ctx())
    assert meta["classes"] == [0, 1, 2]  # codes of the label-encoded target
    evaluation = Classification().run(path, test, Classification.Settings(target="intent"), ctx())
    assert evaluation.scalars["accuracy"] > 0.95 and evaluation.details["unseen_rows"] == 0


def test_feature_names_and_importance_name_text_features_by_their_terms(tmp_path: Path) -> None:
    import pandas as pd

    from skitflow.steps.base import RunContext
    from skitflow.steps.bundle import Chain, ChainStep, train_bundle
    from skitflow.steps.text import Tfidf
    from skitflow.steps.trainers import Linear

    frame = pd.DataFrame({"text": ["refund my bill", "reset password", "bill again", "password lost"] * 10,
                          "n": [1.0, 2.0, 3.0, 4.0] * 10, "note": ["x"] * 40,
                          "label": ["billing", "tech", "billing", "tech"] * 10})
    chain = Chain([ChainStep(Tfidf(), Tfidf.Settings(column="text"), "model")])
    path = str(tmp_path / "model.zip")
    meta = train_bundle(frame, chain, Linear(), Linear.Settings(target="label"), path,
                        RunContext("r", "", "", str(tmp_path), log=None))
    assert list(meta["ignored_columns"]) == ["note"]  # `text` became the tfidf block
    assert meta["ignored_columns"]["note"].startswith("not numeric (")
    assert "`tfidf` or `hashing`" in meta["ignored_columns"]["note"]
    bundle = load_bundle(path)
    names = bundle.feature_names()
    assert names[0] == "n" and len(names) == bundle.design.width
    assert {n.split(":", 1)[1] for n in names[1:]} == {"refund", "my", "bill", "reset", "password",
                                                        "again", "lost"}
    ranked = dict(bundle.feature_importance())
    assert max(ranked, key=ranked.get).split(":")[-1] in {"bill", "password"}  # the words that decide
    assert all(v > 0 for v in ranked.values())


def _frame_with_text_and_gaps() -> pd.DataFrame:
    return pd.DataFrame({
        "utterance": ["hello there", None, "cancel my plan", "", "café ☕"] * 40,
        "minutes": [1.5, None, 3.0, 0.0, -2.25] * 40,
        "turns": [1, 2, 3, 4, 5] * 40,
        "channel": pd.Categorical(["voice", "chat", "voice", "sms", "chat"] * 40),
    })


def test_frame_hash_is_of_the_values_not_of_their_layout_in_memory() -> None:
    """The same rows hash the same whether they are one array, a slice or pieces put together,
    and any change to a value, the row order, a name or a type changes the hash."""
    from skitflow.steps.estimators import frame_hash

    frame = _frame_with_text_and_gaps()
    digest = frame_hash(frame)
    assert len(digest) == 64
    pieces = pd.concat([frame.iloc[:7], frame.iloc[7:101], frame.iloc[101:]], ignore_index=True)
    assert frame_hash(pieces) == digest
    # rows 5.. repeat rows 0.. (period 5): a slice with an offset hashes like a fresh frame
    assert frame_hash(frame.iloc[5:105].reset_index(drop=True)) == frame_hash(frame.iloc[:100])
    assert frame_hash(frame.copy(deep=True)) == digest

    changed = frame.copy()
    changed.loc[17, "utterance"] = "hello therf"
    reordered = frame.iloc[::-1].reset_index(drop=True)
    renamed = frame.rename(columns={"turns": "turn"})
    retyped = frame.astype({"turns": "float64"})
    for other in (changed, reordered, renamed, retyped, frame.iloc[:-1]):
        assert frame_hash(other) != digest


def test_frame_hash_of_frames_arrow_cannot_type_falls_back_to_pandas_row_hashes() -> None:
    from skitflow.steps.estimators import frame_hash

    mixed = pd.DataFrame({"value": [1, "one", 1.5], "n": [1, 2, 3]})
    digest = frame_hash(mixed)
    assert len(digest) == 64 and digest == frame_hash(mixed.copy())
    assert frame_hash(mixed.assign(n=[1, 2, 4])) != digest
    assert len(frame_hash(pd.DataFrame({"a": pd.Series([], dtype="int64")}))) == 64


def test_the_train_digest_is_of_the_rows_as_given_even_when_a_step_changes_them_in_place(
        tmp_path: Path) -> None:
    """The digest is made while the chain fits; a (plugin) step that writes into its frame in
    place must change neither the caller's rows nor the digest of them."""
    from skitflow.steps.base import FittedTransform, StepSettings
    from skitflow.steps.estimators import frame_hash

    class Settings(StepSettings):
        column: str

    class ScaleInPlace(FittedTransform):
        name = "scale_in_place"

        def fit(self, frame: pd.DataFrame, settings: Settings) -> dict:
            frame.loc[:, settings.column] = frame[settings.column] * 1000.0  # in place
            frame.fillna({settings.column: 0.0}, inplace=True)
            return {}

        def apply(self, state: dict, frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
            return frame

    ScaleInPlace.Settings = Settings  # type: ignore[attr-defined]
    frame = utterances()
    before = frame.copy(deep=True)
    path = str(tmp_path / "model.zip")
    meta = train_bundle(frame, chain((ScaleInPlace(), {"column": "duration"}, "model")), Linear(),
                        Linear.Settings(target="intent", features=["duration"]), path, ctx())
    pd.testing.assert_frame_equal(frame, before)
    assert meta["train_data_sha256"] == frame_hash(before)
